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
  void Unguarded() { ++n; }  // writes without the lock
#elif TIERKV_SELFTEST_CASE == 1
  void Dropped() {
    tierkv::MutexLock lock(&mu);
    lock.Unlock();
    ++n;  // after dropping it
  }
#elif TIERKV_SELFTEST_CASE == 2
  void CallsHeld() { Held(); }  // REQUIRES not met
#elif TIERKV_SELFTEST_CASE == 3
  void CallsUnlocked() {
    tierkv::MutexLock lock(&mu);
    Unlocked();  // EXCLUDES violated
  }
#elif TIERKV_SELFTEST_CASE == 4
  void WaitsUnlocked() { cv.Wait(&mu); }  // waits without holding it
#elif TIERKV_SELFTEST_CASE == 5
  void ReturnsUnlocked() REQUIRES(mu) { mu.Unlock(); }  // returns without it
#endif
};

}  // namespace

int main() { return 0; }
