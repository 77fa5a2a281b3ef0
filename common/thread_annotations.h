// Clang thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html).
// The `tsa` preset (make tsa) builds with clang and -Werror=thread-safety; other
// compilers see nothing. Locks are tierkv::Mutex / MutexLock (common/mutex.h):
// libstdc++'s std::mutex carries no capability attributes.
//
//   Mutex mu_;
//   int n_ GUARDED_BY(mu_);               // read or written only with mu_ held
//   void Grow() REQUIRES(mu_);            // caller holds mu_
//   void Reset() EXCLUDES(mu_);           // caller must not hold mu_ (takes it)
//
// NO_THREAD_SAFETY_ANALYSIS turns the analysis off for one function: only where it
// cannot follow the locking (say why next to it), never to silence a finding.
#pragma once

#if defined(__clang__)
#define TIERKV_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TIERKV_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) TIERKV_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY TIERKV_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) TIERKV_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) TIERKV_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) TIERKV_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) TIERKV_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) TIERKV_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) TIERKV_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) TIERKV_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) TIERKV_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) TIERKV_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) TIERKV_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) TIERKV_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) TIERKV_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) TIERKV_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) TIERKV_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) TIERKV_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS TIERKV_THREAD_ANNOTATION(no_thread_safety_analysis)
