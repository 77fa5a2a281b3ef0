/* TIERKV_EXPORT: what libtierkv.so exports. The library is built with hidden
 * visibility; only the C ABI (tierkv.h) and the public C++ classes and functions
 * of these headers are visible to engines. */
#ifndef TIERKV_EXPORT_H_
#define TIERKV_EXPORT_H_

#if defined(__cplusplus) && (defined(__GNUC__) || defined(__clang__))
#define TIERKV_EXPORT [[gnu::visibility("default")]]
#elif defined(__GNUC__) || defined(__clang__)
#define TIERKV_EXPORT __attribute__((visibility("default")))
#else
#define TIERKV_EXPORT
#endif

#endif /* TIERKV_EXPORT_H_ */
