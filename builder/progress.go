package builder

import (
	"fmt"
	"io"
	"time"
)

// progress prints numbered steps with their durations, so a person watching the Job's log
// (kubectl logs -f) sees where a build is and how long each part took.
type progress struct {
	w     io.Writer
	steps int
	step  int
	name  string
	began time.Time
	start time.Time
	// seconds collects each step's duration for the result.
	seconds map[string]float64
}

func newProgress(w io.Writer, steps int) *progress {
	if w == nil {
		w = io.Discard
	}
	now := time.Now()
	return &progress{w: w, steps: steps, start: now, began: now, seconds: map[string]float64{}}
}

// begin ends the current step and starts the next one.
func (p *progress) begin(name, format string, args ...any) {
	p.end()
	p.step++
	p.name = name
	p.began = time.Now()
	fmt.Fprintf(p.w, "[%d/%d] %s\n", p.step, p.steps, fmt.Sprintf(format, args...))
}

// end records the current step's duration.
func (p *progress) end() {
	if p.name == "" {
		return
	}
	d := time.Since(p.began)
	p.seconds[p.name] = roundSeconds(d)
	fmt.Fprintf(p.w, "      %s done in %.1fs\n", p.name, d.Seconds())
	p.name = ""
}

// note prints a detail of the current step.
func (p *progress) note(format string, args ...any) {
	fmt.Fprintf(p.w, "      %s\n", fmt.Sprintf(format, args...))
}

// total is the time since the build started.
func (p *progress) total() time.Duration { return time.Since(p.start) }

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}
