// Command pause is the local cluster's sandbox ("pause") container: it holds the pod's
// namespaces and does nothing else. As PID 1 of the sandbox it reaps the zombies a shared PID
// namespace may hand it, and exits on SIGINT or SIGTERM, which is all the upstream pause
// image does. It is built statically and is the only file of the image hack/images makes.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
