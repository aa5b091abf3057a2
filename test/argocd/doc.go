// Package argocd holds the tests of the Argo CD health check that config/argocd ships for
// CompilerVersion (config/argocd/resource_customizations/splice.dev/CompilerVersion, laid out as
// Argo CD's own resource_customizations are). They run health.lua with gopher-lua, the
// interpreter Argo CD uses, set up as Argo CD sets it up for a script from argocd-cm: the object
// as the global obj, only the base, package and table libraries and os.time and os.date, a
// one-second deadline, and the returned table's status and message as the health. Every case of
// health_test.yaml must match; every testdata file must be a case; every phase of the CRD and
// every name the script compares against must be the API's; and docs/argocd.md must carry the
// script verbatim in its argocd-cm snippet (go test ./test/argocd/ -run TestDocs -update rewrites
// it).
package argocd
