// Operator schemas of pcseg._C and the Python module entry point.
// Kernels register per device in cpu/*.cpp and cuda/*.cu with TORCH_LIBRARY_IMPL.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(pcseg, m) {
  // coord (N,3) float in voxelisation space, batch (N,) int64, origin [] (= per-axis minimum)
  // or 3 values -> coords (V,4) int32 [b,i,j,k], inverse (N,) int64, counts (V,) int64,
  // order (N,) int64 (points grouped by voxel, stable), origin (3,) float64.
  m.def("voxelize(Tensor coord, Tensor batch, float[] voxel_size, float[] origin)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // feat (N,C), order (N,), offsets (V+1,) -> (V,C) mean of each voxel's points.
  m.def("segment_mean(Tensor feat, Tensor order, Tensor offsets) -> Tensor");
  // coords (V,4) int32 [b,x,y,z], feat (V,C) float, grid g, chosen (B,g^3) bool -> feat with
  // the voxels of each sample's chosen rank-quantile boxes zeroed, region (V,) int64 box id,
  // masked (V,) bool. Spec: pcseg/ops/region_mask.py.
  m.def("region_mask(Tensor coords, Tensor feat, int grid, Tensor chosen)"
        " -> (Tensor, Tensor, Tensor)");
  // probs (N,K) float32, parent (N,) int64 in [0, M), num_regions M -> region_probs (M,K)
  // float32 mean of each region's children (zero row when it has none), margin (M,) float32
  // top-1 minus top-2 of each row. Not differentiable. Spec: pcseg/ops/region_margin.py.
  m.def("region_margin(Tensor probs, Tensor parent, int num_regions) -> (Tensor, Tensor)");
  // coord (N,3) float32, feat (N,F) float32, score (N,) float32, scene (N,) int64, labelled
  // (N,) bool -> int64 indices of up to `budget` points chosen greedily in ascending (score,
  // index), skipping labelled points and any point that a point already chosen in its scene
  // lies within `radius` of with feature cosine above `cos_threshold`. Spec:
  // pcseg/ops/selection.py.
  m.def("suppressed_selection(Tensor coord, Tensor feat, Tensor score, Tensor scene,"
        " Tensor labelled, int budget, float radius, float cos_threshold) -> Tensor");
  // features (N_in,C) float32/float64, weight (K,C) same dtype, neighbours (N_out,K) int64 (-1:
  // no input), transposed (N_in,K) int64, the map's transpose (used by the gradient) -> (N_out,C)
  // out[o,c] = sum_k weight[k,c] * features[neighbours[o,k],c]. Differentiable (registered in
  // pcseg/ops/_registrations.py). Spec: pcseg/ops/depthwise_conv.py.
  m.def("depthwise_sparse_conv(Tensor features, Tensor weight, Tensor neighbours,"
        " Tensor transposed) -> Tensor");
  // grad_out (N_out,C), features (N_in,C), neighbours, transposed as above -> (K,C) weight
  // gradient sum_o grad_out[o,c] * features[neighbours[o,k],c], added in a fixed order.
  m.def("depthwise_sparse_conv_weight_grad(Tensor grad_out, Tensor features, Tensor neighbours,"
        " Tensor transposed) -> Tensor");
  // feat (N,C) float, index (P,) int64 in [0, N), segment (P,) int64 in [0, S), num_segments S
  // -> mean (S,C) of feat[index[p]] over the pairings p of each segment (zero row when none),
  // count (S,) int64 pairings per segment. Differentiable in feat (registered in
  // pcseg/ops/_registrations.py). Spec: pcseg/ops/superpixel_pool.py.
  m.def("superpixel_pool(Tensor feat, Tensor index, Tensor segment, int num_segments)"
        " -> (Tensor, Tensor)");
  // grad (S,C), count (S,), index, segment as above, num_rows N -> (N,C) feature gradient
  // sum over pairings p with index[p] = i of grad[segment[p]] / count[segment[p]].
  m.def("superpixel_pool_backward(Tensor grad, Tensor count, Tensor index, Tensor segment,"
        " int num_rows) -> Tensor");
}

static PyObject* compiled_with_cuda(PyObject*, PyObject*) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"compiled_with_cuda", compiled_with_cuda, METH_NOARGS,
     "True when the CUDA kernels were compiled into this build."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
