// Command builder builds a Go plugin into a Splice artifact and pushes it (`builder build`),
// records a host binary's build facts for hosts shipped stripped (`builder facts`), and copies
// itself into a shared volume (`builder install`), which is how the build Job's init container
// brings it from the manager's image into the golang:<goVersion> image.
//
// The build logic lives in package builder; this command is flags and exit statuses only.
// Exit status 0 means the result JSON is on standard output (and in the termination message);
// 1 means the build failed and a failure JSON with a reason is there instead; 2 is a usage
// error.
package main
