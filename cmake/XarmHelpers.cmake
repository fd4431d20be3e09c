# Helpers shared by every part of the build.

# xarm_option_enabled(<OPT> <description> <found-var> <out-var>): declares the option
# XARM_WITH_<OPT> = ON|OFF|AUTO (default AUTO) and resolves it. ON with the dependency
# missing is a configuration error; AUTO quietly follows it.
function(xarm_option_enabled opt description found out)
  set(XARM_WITH_${opt} AUTO CACHE STRING "${description}: ON|OFF|AUTO")
  set_property(CACHE XARM_WITH_${opt} PROPERTY STRINGS ON OFF AUTO)
  if(XARM_WITH_${opt} STREQUAL "OFF")
    set(${out} OFF PARENT_SCOPE)
  elseif(${found})
    set(${out} ON PARENT_SCOPE)
  elseif(XARM_WITH_${opt} STREQUAL "ON")
    message(FATAL_ERROR "XARM_WITH_${opt}=ON but its dependency was not found")
  else()
    message(STATUS "xarm: ${description} disabled (dependency not found)")
    set(${out} OFF PARENT_SCOPE)
  endif()
endfunction()

# xarm_driver_enabled(<OPT> <description> <found-var> <out-var>): a driver's option, as
# xarm_option_enabled; an enabled driver is added to the global property
# XARM_DRIVERS_BUILT.
function(xarm_driver_enabled opt description found out)
  xarm_option_enabled(${opt} "${description}" ${found} enabled)
  set(${out} ${enabled} PARENT_SCOPE)
  if(enabled)
    string(TOLOWER ${opt} name)
    set_property(GLOBAL APPEND PROPERTY XARM_DRIVERS_BUILT ${name})
  endif()
endfunction()

# xarm_conformance_server(<driver> <VARIABLE>): runs the conformance suite against the
# driver with the info string in environment variable VARIABLE (a test server of the
# development servers), as CTest test xarm_conformance_<variable>.
function(xarm_conformance_server driver variable)
  set_property(GLOBAL APPEND PROPERTY XARM_CONFORMANCE_SERVERS "${driver}:${variable}")
endfunction()

# xarm_add_driver(<name> SOURCES ... LIBS ...): libxarm_<name>.so, target xarm::<name>.
function(xarm_add_driver name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_library(xarm_${name} SHARED ${ARG_SOURCES})
  add_library(xarm::${name} ALIAS xarm_${name})
  target_link_libraries(xarm_${name} PUBLIC xarm_core PRIVATE ${ARG_LIBS})
  set_target_properties(xarm_${name} PROPERTIES EXPORT_NAME ${name}
    BUILD_RPATH "$ORIGIN" INSTALL_RPATH "$ORIGIN")
  install(TARGETS xarm_${name} EXPORT xarmTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endfunction()

# xarm_add_test(<name> SOURCES ... LIBS ... [SERVER] [LABELS ...] [ENV ...]): a Boost.Test
# program registered with CTest. Tests needing a server read it from the environment and
# fail under CI=true when it is missing. SERVER: the test uses the shared development
# servers (and may restart them), so such tests never run at the same time.
function(xarm_add_test name)
  cmake_parse_arguments(ARG "SERVER" "TIMEOUT" "SOURCES;LIBS;LABELS;ENV" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE xarm_testing ${ARG_LIBS})
  add_test(NAME ${name} COMMAND ${name} --log_level=message --report_level=short)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} SKIP_RETURN_CODE 77)
  if(ARG_SERVER)
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK devservers)
    list(APPEND ARG_LABELS server)
  endif()
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
  if(ARG_ENV)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${ARG_ENV}")
  endif()
endfunction()
