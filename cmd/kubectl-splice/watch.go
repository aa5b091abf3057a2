package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	splicev1 "github.com/splice-dev/splice/api/v1alpha1"
)

// clearScreen moves the cursor home and clears the terminal, so each frame replaces the last.
const clearScreen = "\x1b[H\x1b[2J"

// watchRollout draws the rollout, then redraws it whenever the CompilerVersion or one of its
// pods changes, until ctx ends (Ctrl-C), which is a normal end. Changes arrive through informers
// (a list, then a watch that resumes where it left off), never by polling the API server. On a
// terminal the frame is redrawn in place, and also once a second from the informers' caches so
// that the pause timers move; elsewhere each changed frame is printed after a blank line.
func watchRollout(ctx context.Context, s *session, name string, out io.Writer, now func() time.Time) error {
	// Read once directly: a wrong name or missing rights fail here with a clear error, where an
	// informer would retry forever.
	cv, err := s.getCV(ctx, name)
	if err != nil {
		return err
	}
	if _, err := s.targetPods(ctx, cv); err != nil {
		return err
	}

	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default: // a redraw is already due; it will read the latest state
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cvs, _, err := s.startCache(ctx, &splicev1.CompilerVersion{},
		cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", name)}, poke)
	if err != nil {
		return err
	}
	// The pods' informer follows the CompilerVersion's selector: it is replaced when the
	// selector changes.
	var pods cache.Cache
	var podSelector string
	stopPods := func() {}
	defer func() { stopPods() }()

	var tick <-chan time.Time
	tty := isTerminal(out)
	if tty {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	last, first := "", true
	for {
		var frame string
		cv := &splicev1.CompilerVersion{}
		err := cvs.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, cv)
		switch {
		case ctx.Err() != nil:
			return nil
		case apierrors.IsNotFound(err):
			frame = fmt.Sprintf("CompilerVersion %q does not exist in namespace %q (deleted?); waiting for it to be created. Ctrl-C to stop.\n",
				name, s.namespace)
		case err != nil:
			return fmt.Errorf("read CompilerVersion %s/%s from the watch cache: %w", s.namespace, name, err)
		default:
			var list []corev1.Pod
			if sel, err := metav1.LabelSelectorAsSelector(&cv.Spec.Selector); err == nil && !sel.Empty() {
				if sel.String() != podSelector || pods == nil {
					stopPods()
					pods, stopPods, err = s.startPodCache(ctx, sel, poke)
					if err != nil {
						if ctx.Err() != nil {
							return nil
						}
						return err
					}
					podSelector = sel.String()
				}
				var pl corev1.PodList
				if err := pods.List(ctx, &pl); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("read the pods of CompilerVersion %s/%s from the watch cache: %w", s.namespace, name, err)
				}
				list = pl.Items
			}
			frame = render(cv, list, now())
		}

		if frame != last {
			var err error
			switch {
			case tty:
				_, err = io.WriteString(out, clearScreen+frame)
			case first:
				_, err = io.WriteString(out, frame)
			default:
				_, err = io.WriteString(out, "\n"+frame)
			}
			if err != nil {
				return fmt.Errorf("write the frame: %w", err)
			}
			last, first = frame, false
		}

		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick:
		}
	}
}

// startPodCache starts an informer on the pods the selector matches in the session's namespace.
func (s *session) startPodCache(ctx context.Context, sel labels.Selector, onChange func()) (cache.Cache, func(), error) {
	c, stop, err := s.startCache(ctx, &corev1.Pod{}, cache.ByObject{Label: sel}, onChange)
	if err != nil {
		return nil, func() {}, err
	}
	return c, stop, nil
}

// startCache starts an informer on one kind in the session's namespace, restricted as by says,
// calls onChange on every add, update and delete, and returns once it has synced. The informer
// stops when ctx ends or the returned function is called.
func (s *session) startCache(ctx context.Context, obj client.Object, by cache.ByObject, onChange func()) (cache.Cache, context.CancelFunc, error) {
	c, err := cache.New(s.cfg, cache.Options{
		HTTPClient:        s.httpClient,
		Scheme:            s.scheme,
		Mapper:            s.mapper,
		DefaultNamespaces: map[string]cache.Config{s.namespace: {}},
		ByObject:          map[client.Object]cache.ByObject{obj: by},
		DefaultTransform:  cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("set up the watch on %T in namespace %s: %w", obj, s.namespace, err)
	}
	inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, nil, fmt.Errorf("set up the watch on %T in namespace %s: %w", obj, s.namespace, err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}); err != nil {
		return nil, nil, fmt.Errorf("watch %T in namespace %s: %w", obj, s.namespace, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { _ = c.Start(cctx) }()
	if !c.WaitForCacheSync(cctx) {
		cancel()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, errors.New("the watch cache did not sync")
	}
	return c, cancel, nil
}
