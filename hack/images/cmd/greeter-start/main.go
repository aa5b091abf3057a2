// Command greeter-start is the entrypoint of the greeter example's image. The greeter host
// loads its first plugin only from inside the directory it shares with the agent (-shared),
// which is an emptyDir mounted over anything the image had there; so this copies the plugin
// baked into the image into that directory, under a name of its own, and then becomes the
// greeter (exec, same PID) with -plugin pointing at the copy.
//
//	greeter-start -seed /plugins/v1.so -shared /var/run/splice -- /greeter -addr :8080
//
// Without -seed, or when the seed does not exist, it execs the greeter unchanged: the agent then
// brings the first version.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "greeter-start:", err)
		os.Exit(1)
	}
}

func run() error {
	seed := flag.String("seed", "", "plugin file in the image to serve first")
	shared := flag.String("shared", envOr("SPLICE_SHARED_DIR", "/var/run/splice"), "the directory shared with the agent (the greeter's -shared)")
	flag.Parse()
	argv := flag.Args()
	if len(argv) == 0 {
		return errors.New("usage: greeter-start [-seed FILE] [-shared DIR] -- GREETER [ARGS...]")
	}
	argv = append(argv, "-shared", *shared)
	if *seed != "" {
		if _, err := os.Stat(*seed); err == nil {
			// The seed's own name: a file name per version, never reused for another one.
			dst := filepath.Join(*shared, "seed-"+filepath.Base(*seed))
			if err := copyOnce(*seed, dst); err != nil {
				return err
			}
			argv = append(argv, "-plugin", dst)
		}
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}

// copyOnce copies src to dst unless dst exists (a container restart finds it there, maybe
// loaded by the host it replaces: it must never be overwritten in place).
func copyOnce(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("copy the seed plugin into %s: %w", filepath.Dir(dst), err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
