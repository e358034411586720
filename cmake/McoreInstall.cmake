# find_package(mcore) support for programs that link the library.
include(CMakePackageConfigHelpers)
install(EXPORT mcoreTargets NAMESPACE mcore:: DESTINATION lib/cmake/mcore)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/mcoreConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mcoreConfig.cmake INSTALL_DESTINATION lib/cmake/mcore)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mcoreConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mcoreConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/mcoreConfigVersion.cmake DESTINATION lib/cmake/mcore)
