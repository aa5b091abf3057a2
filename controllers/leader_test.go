package controllers

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// electedManager is a manager that runs the reconciler only while it holds the lease.
type electedManager struct {
	mgr  ctrl.Manager
	stop func()
}

func startElected(name string) *electedManager {
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		LeaderElection: true, LeaderElectionID: "splice-leader-test", LeaderElectionNamespace: "default",
		LeaseDuration: ptr.To(3 * time.Second), RenewDeadline: ptr.To(2 * time.Second), RetryPeriod: ptr.To(200 * time.Millisecond),
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: ptr.To(true)}})
	Expect(err).NotTo(HaveOccurred())
	Expect((&CompilerVersionReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(name)}).SetupWithManager(mgr)).To(Succeed())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	return &electedManager{mgr: mgr, stop: func() { cancel(); <-done }}
}

func (e *electedManager) elected() bool {
	select {
	case <-e.mgr.Elected():
		return true
	default:
		return false
	}
}

// reporters returns the controllers that wrote Events about the CompilerVersion.
func reporters(g Gomega, ns, name string) map[string]bool {
	var events eventsv1.EventList
	g.Expect(k8sClient.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
	out := map[string]bool{}
	for _, e := range events.Items {
		if e.Regarding.Name == name {
			out[e.ReportingController] = true
		}
	}
	return out
}

var _ = Describe("Leader election", Serial, func() {
	It("lets exactly one of two managers act, and the other take over when it stops", func() {
		// The suite's own manager would act too; these two must be alone.
		stopManager()
		DeferCleanup(func() { stopManager = startManager() })

		a, b := startElected("splice-a"), startElected("splice-b")
		var leader, follower *electedManager
		Eventually(func() bool { return a.elected() || b.elected() }).Should(BeTrue())
		leader, follower = a, b
		if b.elected() {
			leader, follower = b, a
		}
		Consistently(follower.elected, "2s", "100ms").Should(BeFalse(), "both managers hold the lease")
		leaderName, followerName := "splice-a", "splice-b"
		if leader == b {
			leaderName, followerName = followerName, leaderName
		}

		ns := newNamespace()
		cv := newCV(ns, map[string]string{"app": "elected"})
		Eventually(func(g Gomega) {
			g.Expect(reporters(g, ns, cv.Name)).To(HaveKey(leaderName))
		}).Should(Succeed())
		Expect(reporters(Default, ns, cv.Name)).NotTo(HaveKey(followerName))

		// The leader stops and releases the lease: the follower takes over and acts.
		leader.stop()
		Eventually(follower.elected).Should(BeTrue())
		newPod(ns, "p", map[string]string{"app": "elected"})
		Eventually(func(g Gomega) {
			got := getCV(cv)(g)
			g.Expect(got.Status.Targeted).To(Equal(int32(1)))
		}).Should(Succeed())
		follower.stop()
	})
})
