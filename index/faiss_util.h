// The FAISS calls index/ makes, behind Status: FAISS reports errors with C++
// exceptions, which must not cross the module boundary (STYLE.md). Everything
// here runs on the calling thread plus FAISS's OpenMP pool.
//
// Layouts: vectors row-major, n * d floats; centroids k * d floats.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace tierkv::index {

// Caps the threads FAISS uses, process-wide: OpenMP's (omp_set_num_threads) and,
// when FAISS runs on OpenBLAS, OpenBLAS's own pool.
// REQUIRES: threads >= 1. Tests use 1: their data are small and OpenMP's
// spinning pool is slow on a busy 2-core machine.
void SetFaissThreads(int threads);

struct KMeansOptions {
  uint32_t iterations = 10;          // Lloyd iterations. Default: 10
  uint32_t max_points_per_centroid = 64;  // FAISS subsamples the training set above k * this. Default: 64
  uint64_t seed = 1234;              // Default: 1234
};

// k-means (L2) of x [n][d] into *centroids [k][d] with FAISS's Clustering.
// kInvalidArgument when k == 0 or k > n; kInternal when FAISS throws.
Status KMeans(const float* x, uint64_t n, uint32_t d, uint32_t k, const KMeansOptions& options,
              std::vector<float>* centroids);

// The `nn` nearest centroids (L2) of each row of x, nearest first:
// labels and dist2 (squared distances) resized to [n][nn].
// kInvalidArgument when nn == 0 or nn > k; kInternal when FAISS throws.
Status NearestCentroids(const float* x, uint64_t n, uint32_t d, const float* centroids, uint32_t k, uint32_t nn,
                        std::vector<int64_t>* labels, std::vector<float>* dist2);

}  // namespace tierkv::index
