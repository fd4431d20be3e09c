# FindMySQLConnectorCpp: MySQL Connector/C++ 1.1 (the "JDBC-like" API, Debian's
# libmysqlcppconn-dev), which ships no CMake package configuration.
#
# Defines MySQLConnectorCpp_FOUND, MySQLConnectorCpp_INCLUDE_DIR,
# MySQLConnectorCpp_LIBRARY, MySQLConnectorCpp_VERSION (when the header says) and the
# imported target MySQLConnectorCpp::MySQLConnectorCpp.
find_path(MySQLConnectorCpp_INCLUDE_DIR
  NAMES mysql_driver.h cppconn/driver.h
  PATH_SUFFIXES mysql-cppconn-8/jdbc mysql-cppconn/jdbc)
find_library(MySQLConnectorCpp_LIBRARY NAMES mysqlcppconn)

if(MySQLConnectorCpp_INCLUDE_DIR AND EXISTS "${MySQLConnectorCpp_INCLUDE_DIR}/cppconn/version_info.h")
  file(STRINGS "${MySQLConnectorCpp_INCLUDE_DIR}/cppconn/version_info.h" _mcc_ver
       REGEX "#define MYCPPCONN_DM_VERSION[ \t]+\"[0-9.]+\"")
  if(_mcc_ver MATCHES "\"([0-9.]+)\"")
    set(MySQLConnectorCpp_VERSION "${CMAKE_MATCH_1}")
  endif()
  unset(_mcc_ver)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(MySQLConnectorCpp
  REQUIRED_VARS MySQLConnectorCpp_LIBRARY MySQLConnectorCpp_INCLUDE_DIR
  VERSION_VAR MySQLConnectorCpp_VERSION)

if(MySQLConnectorCpp_FOUND AND NOT TARGET MySQLConnectorCpp::MySQLConnectorCpp)
  add_library(MySQLConnectorCpp::MySQLConnectorCpp UNKNOWN IMPORTED)
  set_target_properties(MySQLConnectorCpp::MySQLConnectorCpp PROPERTIES
    IMPORTED_LOCATION "${MySQLConnectorCpp_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MySQLConnectorCpp_INCLUDE_DIR}")
endif()
mark_as_advanced(MySQLConnectorCpp_INCLUDE_DIR MySQLConnectorCpp_LIBRARY)
