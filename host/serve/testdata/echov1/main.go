// Plugin echov1 is package serve's test plugin.
package main

import "github.com/splice-dev/splice/host/serve/internal/echo"

// APIVersion is the contract version this plugin implements.
var APIVersion = "1.0.0"

type impl struct{}

func (impl) Echo(s string) string { return "v1:" + s }

// Plugin is the constructor the host library looks up.
func Plugin() echo.Echoer { return impl{} }

func main() {}
