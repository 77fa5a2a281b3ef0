#include "index/faiss_util.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>

#include <omp.h>

#include <exception>
#include <string>

namespace tierkv::index {

// OpenBLAS (FAISS's BLAS here) keeps its own pthread pool; the symbol is weak
// so that another BLAS links too.
extern "C" void openblas_set_num_threads(int threads) __attribute__((weak));

void SetFaissThreads(int threads) {
  omp_set_num_threads(threads);
  if (openblas_set_num_threads != nullptr) openblas_set_num_threads(threads);
}

Status KMeans(const float* x, uint64_t n, uint32_t d, uint32_t k, const KMeansOptions& options,
              std::vector<float>* centroids) {
  if (k == 0 || k > n) {
    return InvalidArgument("k-means of " + std::to_string(n) + " vectors into " + std::to_string(k) + " clusters");
  }
  try {
    faiss::ClusteringParameters cp;
    cp.niter = static_cast<int>(options.iterations);
    cp.max_points_per_centroid = static_cast<int>(options.max_points_per_centroid);
    cp.min_points_per_centroid = 1;  // small layers are fine; no warning on stderr
    cp.seed = static_cast<int>(options.seed & 0x7fffffff);
    cp.verbose = false;
    faiss::Clustering clus(static_cast<int>(d), static_cast<int>(k), cp);
    faiss::IndexFlatL2 index(d);
    clus.train(static_cast<faiss::Index::idx_t>(n), x, index);
    *centroids = std::move(clus.centroids);
  } catch (const std::exception& e) {
    return Internal(std::string("FAISS k-means: ") + e.what());
  }
  return OkStatus();
}

Status NearestCentroids(const float* x, uint64_t n, uint32_t d, const float* centroids, uint32_t k, uint32_t nn,
                        std::vector<int64_t>* labels, std::vector<float>* dist2) {
  if (nn == 0 || nn > k) {
    return InvalidArgument("nearest " + std::to_string(nn) + " of " + std::to_string(k) + " centroids");
  }
  labels->resize(n * nn);
  dist2->resize(n * nn);
  try {
    faiss::IndexFlatL2 index(d);
    index.add(k, centroids);
    static_assert(sizeof(faiss::Index::idx_t) == sizeof(int64_t));
    index.search(static_cast<faiss::Index::idx_t>(n), x, nn, dist2->data(),
                 reinterpret_cast<faiss::Index::idx_t*>(labels->data()));
  } catch (const std::exception& e) {
    return Internal(std::string("FAISS search: ") + e.what());
  }
  return OkStatus();
}

}  // namespace tierkv::index
