import CLapack
func _probe() -> Int32 { openblas_get_num_threads() + LAPACKE_sgesdd(LAPACK_COL_MAJOR, 83, 0, 0, nil, 1, nil, nil, 1, nil, 1) }
