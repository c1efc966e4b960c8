# Driven by the consumer_find_package test (see CMakeLists.txt beside this file).
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
  message("${output}")
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "consumer test: ${description} failed (${status})")
  endif()
endfunction()

run_step("install" "${CMAKE_COMMAND}" --install "${TILEFLASH_BUILD_DIR}" --prefix "${prefix}")
set(configure_args -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)
if(CUDA_COMPILER)
  # An installed CUDA build asks for the CUDA toolkit through find_dependency(CUDAToolkit).
  get_filename_component(cuda_bin "${CUDA_COMPILER}" DIRECTORY)
  get_filename_component(cuda_root "${cuda_bin}" DIRECTORY)
  list(APPEND configure_args -DCUDAToolkit_ROOT=${cuda_root})
endif()
run_step("configure" "${CMAKE_COMMAND}" ${configure_args})
run_step("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
if(EXISTS "${WORK_DIR}/build/tileflash_consumer")
  run_step("run" "${WORK_DIR}/build/tileflash_consumer")
else()
  message(FATAL_ERROR "consumer test: the consumer executable was not built")
endif()
