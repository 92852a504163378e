// detops._C: an empty Python module. Importing it loads this library, whose static initialisers register
// every op with the PyTorch dispatcher (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in ops/, cpu/, cuda/).
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "detops native ops (see torch.ops.detops)", -1,
                                          nullptr};
  return PyModule_Create(&module_def);
}
}
