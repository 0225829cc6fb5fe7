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
