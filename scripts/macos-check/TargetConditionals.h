/* Stand-in for the macOS SDK's TargetConditionals.h, used only by `.ci/run` to check (clippy)
 * ferry for the macOS targets on Linux, where no macOS SDK exists. ring's C code includes this
 * header to learn it is building for macOS; nothing here is linked or shipped. A real macOS
 * build uses the SDK's own header. */
#ifndef FERRY_STUB_TARGET_CONDITIONALS_H
#define FERRY_STUB_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#endif
