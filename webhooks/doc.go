// Package webhooks holds Splice's admission webhooks and the certificates they are served with.
//
// # Pod injection
//
// One Pod mutating webhook (PodInjector) gives every pod that opted in what Splice needs, through
// feature mutators applied in the order documented on podMutators: the shared emptyDir, the
// agent sidecar (non-root, read-only root filesystem, all capabilities dropped, no privilege
// escalation, pod name and namespace from the downward API), the agent's readiness (/readyz)
// and liveness (/livez) probes, the shared volume in the app containers (annotation
// splice.dev/app-containers, default the first container) and the readiness gate
// splice.dev/plugin-ready. The agent gets service-account credentials of its own (a projected
// volume, splice-agent-token, mounted into it alone), and the app containers lose the token the
// API server mounted into them (automountServiceAccountToken becomes false) unless the pod keeps
// it with splice.dev/app-service-account-token: "true": the agent's rights are the app's only
// by the pod's choice. Injection is idempotent and answers with no patch when the pod is
// already as it would make it. A pod opts in with the label splice.dev/inject=true, or by living
// in a namespace with that label and carrying no such label itself; splice.dev/inject=false on the
// pod opts it out. Pods that did not opt in are never changed: the webhook configuration's
// selectors keep them from reaching the webhook at all, and the handler checks again.
//
// # Updates of injected pods
//
// Injection runs at creation only. PodGuard, a validating webhook on pods and
// pods/ephemeralcontainers UPDATE, keeps an update from undoing it: it refuses a change of the
// agent container (its image above all), a removed or re-pointed shared or token volume or
// mount of them, and an ephemeral container that mounts either volume or targets the agent
// (GuardUpdate lists what it refuses). Its matchConditions send it only spec changes of pods
// that have the agent, so metadata writes — nearly every pod update — never depend on the
// manager being up. What the agent itself may write is limited by the ValidatingAdmissionPolicy
// splice-agent-own-pod (config/policy), which needs no webhook server at all.
//
// # Failure policy: why the Pod webhook fails closed, and why that is safe
//
// A manager outage must not block unrelated pods; it also must not let an opted-in pod start
// without its agent. Both Pod webhook entries therefore use failurePolicy Fail with selectors so
// narrow that only opted-in pods are ever sent: an objectSelector on splice.dev/inject (In
// ["true"], or DoesNotExist together with a namespaceSelector on the namespace's label). An
// unrelated pod never matches, so the API server never calls the webhook for it and an outage
// cannot touch it. kube-system and splice-system are excluded by name, so the manager itself can
// always be recreated while it is down (no deadlock). timeoutSeconds is 5 so a hung manager
// delays opted-in pods briefly instead of stalling their controllers.
//
// During an outage, opted-in pods are refused and their controllers (ReplicaSet, Job, ...) retry
// with back-off, so they are created correctly once the manager is back; scaling and
// replacement of those workloads wait meanwhile — the cost of this choice. Ignore was rejected
// because nothing repairs a pod admitted without injection: admission runs only at creation,
// the app would start without the shared volume its host library's control socket lives in, and
// the readiness gate cannot flag it because the same webhook adds the gate. The chart runs the
// manager with two replicas (any replica serves webhooks; only the leader reconciles), spread
// over nodes, with a PodDisruptionBudget, to make outages rare; docs/security.md ("Admission
// while the manager is down") says what an outage blocks and what it does not. The UPDATE guard
// fails closed too, blocking only spec changes of injected pods while no replica answers.
//
// # CompilerVersion admission
//
// CompilerVersionWebhook is a typed admission.Defaulter and admission.Validator. It fills in
// spec.plugin.symbol, rollingPatch.maxUnavailable, canary.onFailure and maxLoadedVersions with
// the API's defaults (splicev1.Default*), and refuses, with a field.ErrorList returned as
// apierrors.NewInvalid:
//   - a selector that could select a pod another CompilerVersion in the namespace selects,
//     naming that one (SelectorsOverlap documents how overlap is decided: exactly, by whether
//     some label set satisfies both selectors);
//   - changes to goVersion, the plugin source, package or tags, or the strategy type while
//     a rollout is under way (CompilerVersion.RolloutActive: status.phase Progressing or
//     Paused), unless it is aborted with the annotation splice.dev/abort: "true"
//     (CompilerVersion.Aborted, the rollout controller's abort);
//   - canary steps whose setWeight or trafficPercent go backwards, or that route traffic at
//     setWeight 0.
//
// Both CompilerVersion webhooks fail closed: an outage blocks only CompilerVersion writes.
//
// # Certificates
//
// ServingCerts provides the serving certificate: by default the manager manages it with
// open-policy-agent/cert-controller (a CA and a certificate in a Secret, the CA injected into both
// webhook configurations, renewal before expiry) and serves it straight from the Secret; with
// CertModeCertManager, cert-manager issues it and injects the CA (config/webhook/certmanager).
//
// This package registers handlers and certificates on a manager; it never writes pods or
// CompilerVersions itself, and touches Secrets and webhook configurations only through
// ServingCerts.
//
// +kubebuilder:webhookconfiguration:mutating=true,name=splice-mutating-webhook-configuration
// +kubebuilder:webhookconfiguration:mutating=false,name=splice-validating-webhook-configuration
//
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups=splice.dev,resources=compilerversions,verbs=get;list;watch
// The certificate rotator's informers list and watch every webhook configuration (RBAC cannot
// narrow a list without a field selector, and they hold no secrets); it reads and updates only
// Splice's two, which is all the manager may write.
//
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update,resourceNames=splice-mutating-webhook-configuration
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;update,resourceNames=splice-validating-webhook-configuration
// +kubebuilder:rbac:groups="",namespace=splice-system,resources=secrets,verbs=get;list;watch;create;update
package webhooks
