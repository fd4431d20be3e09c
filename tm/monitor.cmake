# The manager as a monitor, included from the top level once the drivers are defined:
# the TX example (a C program knowing only tx.h, xa.h and the databases' client calls)
# and its tests, with xarm's own pq and mysql switches and a deliberately lying switch.
if(NOT (TARGET xarm_pq AND TARGET xarm_mysql))
  message(STATUS "xarm: the TX example and its tests need the pq and mysql drivers")
  return()
endif()
set(_tm ${PROJECT_SOURCE_DIR}/tm)
find_package(PostgreSQL REQUIRED)  # imported targets are per directory: libpq for the example
add_executable(xarm_tx_transfer ${_tm}/examples/tx_transfer.c)
set_target_properties(xarm_tx_transfer PROPERTIES OUTPUT_NAME tx_transfer C_EXTENSIONS OFF)
target_link_libraries(xarm_tx_transfer PRIVATE xarm_tm xarm_pq xarm_mysql PostgreSQL::PostgreSQL)

if(NOT BUILD_TESTING)
  return()
endif()
add_library(xarm_lying_switch SHARED ${_tm}/tests/lying_switch.c)
target_include_directories(xarm_lying_switch PRIVATE ${PROJECT_SOURCE_DIR}/xa/include)
target_link_libraries(xarm_lying_switch PRIVATE ${CMAKE_DL_LIBS} Threads::Threads)
target_compile_definitions(xarm_lying_switch PRIVATE LYING_INNER_LIB="$<TARGET_FILE:xarm_pq>")
set_target_properties(xarm_lying_switch PROPERTIES OUTPUT_NAME lying_pq
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/tm/tests C_EXTENSIONS OFF)
add_dependencies(xarm_lying_switch xarm_pq)

xarm_add_test(xarm_tx_tests SERVER TIMEOUT 600 SOURCES ${_tm}/tests/tx_test.cpp
  LIBS xarm_tm ${CMAKE_DL_LIBS})
target_include_directories(xarm_tx_tests PRIVATE ${_tm}/tests)
target_compile_definitions(xarm_tx_tests PRIVATE
  XARM_TX_TRANSFER="$<TARGET_FILE:xarm_tx_transfer>"
  XARM_CLI="$<TARGET_FILE:xarm>"
  XARM_PQ_LIB="$<TARGET_FILE:xarm_pq>"
  XARM_LYING_LIB="$<TARGET_FILE:xarm_lying_switch>")
add_dependencies(xarm_tx_tests xarm_tx_transfer xarm_lying_switch xarm xarm_mysql)
