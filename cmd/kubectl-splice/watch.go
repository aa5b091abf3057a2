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
	w := &rolloutWatch{s: s, name: name, cvs: cvs, onChange: poke, stopPods: func() {}}
	defer func() { w.stopPods() }()

	p := &framePrinter{out: out, tty: isTerminal(out)}
	var tick <-chan time.Time
	if p.tty {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	for {
		frame, err := w.frame(ctx, now())
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if err := p.print(frame); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick:
		}
	}
}

// rolloutWatch draws frames from the informers' caches: the CompilerVersion's, and its pods',
// which follows the CompilerVersion's selector and is replaced when the selector changes.
type rolloutWatch struct {
	s        *session
	name     string
	cvs      cache.Cache
	onChange func()

	pods        cache.Cache
	podSelector string
	stopPods    func()
}

// frame renders the rollout as the caches hold it now, or says that the CompilerVersion does
// not exist (it may be created again).
func (w *rolloutWatch) frame(ctx context.Context, now time.Time) (string, error) {
	cv := &splicev1.CompilerVersion{}
	err := w.cvs.Get(ctx, client.ObjectKey{Namespace: w.s.namespace, Name: w.name}, cv)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("CompilerVersion %q does not exist in namespace %q (deleted?); waiting for it to be created. Ctrl-C to stop.\n",
			w.name, w.s.namespace), nil
	case err != nil:
		return "", fmt.Errorf("read CompilerVersion %s/%s from the watch cache: %w", w.s.namespace, w.name, err)
	}
	pods, err := w.podsOf(ctx, cv)
	if err != nil {
		return "", err
	}
	return render(cv, pods, now), nil
}

// podsOf lists the pods the CompilerVersion's selector matches from the pods' cache, starting
// (or restarting, for a new selector) its informer first. A selector that cannot be used, or
// is empty, selects nothing; render says why.
func (w *rolloutWatch) podsOf(ctx context.Context, cv *splicev1.CompilerVersion) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(&cv.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil, nil
	}
	if sel.String() != w.podSelector || w.pods == nil {
		w.stopPods()
		w.pods, w.stopPods, err = w.s.startPodCache(ctx, sel, w.onChange)
		if err != nil {
			return nil, err
		}
		w.podSelector = sel.String()
	}
	var pl corev1.PodList
	if err := w.pods.List(ctx, &pl); err != nil {
		return nil, fmt.Errorf("read the pods of CompilerVersion %s/%s from the watch cache: %w", w.s.namespace, w.name, err)
	}
	return pl.Items, nil
}

// framePrinter writes the frames that differ from the last one: in place on a terminal, else
// one after the other, a blank line apart.
type framePrinter struct {
	out   io.Writer
	tty   bool
	last  string
	wrote bool
}

func (p *framePrinter) print(frame string) error {
	if frame == p.last {
		return nil
	}
	var err error
	switch {
	case p.tty:
		_, err = io.WriteString(p.out, clearScreen+frame)
	case !p.wrote:
		_, err = io.WriteString(p.out, frame)
	default:
		_, err = io.WriteString(p.out, "\n"+frame)
	}
	if err != nil {
		return fmt.Errorf("write the frame: %w", err)
	}
	p.last, p.wrote = frame, true
	return nil
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
