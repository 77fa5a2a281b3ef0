// Must NOT compile under TIERKV_THREAD_SAFETY (CMakeLists.txt try_compile): proves
// that the analysis is on and that common/mutex.h's annotations are seen. Each
// function is one mistake the analysis must catch.
#include "common/mutex.h"

namespace {

struct Counter {
  tierkv::Mutex mu;
  tierkv::CondVar cv;
  int n GUARDED_BY(mu) = 0;
  void Held() REQUIRES(mu) { ++n; }
  void Unlocked() EXCLUDES(mu) {}

#if TIERKV_SELFTEST_CASE == 0
  // Writes without the lock.
  void Unguarded() {
    ++n;
  }
#elif TIERKV_SELFTEST_CASE == 1
  void Dropped() {
    tierkv::MutexLock lock(&mu);
    lock.Unlock();
    ++n;  // after dropping it
  }
#elif TIERKV_SELFTEST_CASE == 2
  // REQUIRES not met.
  void CallsHeld() {
    Held();
  }
#elif TIERKV_SELFTEST_CASE == 3
  void CallsUnlocked() {
    tierkv::MutexLock lock(&mu);
    Unlocked();  // EXCLUDES violated
  }
#elif TIERKV_SELFTEST_CASE == 4
  // Waits without holding it.
  void WaitsUnlocked() {
    cv.Wait(&mu);
  }
#elif TIERKV_SELFTEST_CASE == 5
  // Returns without it.
  void ReturnsUnlocked() REQUIRES(mu) {
    mu.Unlock();
  }
#endif
};

}  // namespace

int main() {
  return 0;
}
