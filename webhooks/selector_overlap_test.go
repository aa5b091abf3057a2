package webhooks

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func sel(ml map[string]string, exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: ml, MatchExpressions: exprs}
}

func expr(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
}

func TestSelectorsOverlap(t *testing.T) {
	tests := []struct {
		name    string
		a, b    *metav1.LabelSelector
		overlap bool
		wantErr bool
	}{
		{name: "same matchLabels", a: sel(map[string]string{"app": "greeter"}), b: sel(map[string]string{"app": "greeter"}), overlap: true},
		{name: "matchLabels conflict on a shared key", a: sel(map[string]string{"app": "greeter"}), b: sel(map[string]string{"app": "billing"}), overlap: false},
		{name: "unrelated keys: a pod can carry both labels", a: sel(map[string]string{"app": "greeter"}), b: sel(map[string]string{"tier": "backend"}), overlap: true},
		{name: "one conflicting key among several makes them disjoint",
			a: sel(map[string]string{"app": "greeter", "track": "stable"}), b: sel(map[string]string{"app": "greeter", "track": "canary"}), overlap: false},
		{name: "In sets intersect", a: sel(nil, expr("app", metav1.LabelSelectorOpIn, "a", "b")), b: sel(nil, expr("app", metav1.LabelSelectorOpIn, "b", "c")), overlap: true},
		{name: "In sets disjoint", a: sel(nil, expr("app", metav1.LabelSelectorOpIn, "a", "b")), b: sel(nil, expr("app", metav1.LabelSelectorOpIn, "c")), overlap: false},
		{name: "matchLabels against In containing it", a: sel(map[string]string{"app": "b"}), b: sel(nil, expr("app", metav1.LabelSelectorOpIn, "a", "b")), overlap: true},
		{name: "In fully excluded by NotIn", a: sel(nil, expr("app", metav1.LabelSelectorOpIn, "a", "b")), b: sel(nil, expr("app", metav1.LabelSelectorOpNotIn, "a", "b")), overlap: false},
		{name: "In partly excluded by NotIn", a: sel(nil, expr("app", metav1.LabelSelectorOpIn, "a", "b")), b: sel(nil, expr("app", metav1.LabelSelectorOpNotIn, "a")), overlap: true},
		{name: "Exists against DoesNotExist", a: sel(nil, expr("app", metav1.LabelSelectorOpExists)), b: sel(nil, expr("app", metav1.LabelSelectorOpDoesNotExist)), overlap: false},
		{name: "matchLabels against DoesNotExist", a: sel(map[string]string{"app": "x"}), b: sel(nil, expr("app", metav1.LabelSelectorOpDoesNotExist)), overlap: false},
		{name: "Exists against NotIn: another value always exists", a: sel(nil, expr("app", metav1.LabelSelectorOpExists)), b: sel(nil, expr("app", metav1.LabelSelectorOpNotIn, "any", "any-1")), overlap: true},
		{name: "NotIn against DoesNotExist: leave the label off", a: sel(nil, expr("app", metav1.LabelSelectorOpNotIn, "x")), b: sel(nil, expr("app", metav1.LabelSelectorOpDoesNotExist)), overlap: true},
		{name: "contradiction inside one selector selects nothing",
			a: sel(map[string]string{"app": "x"}, expr("app", metav1.LabelSelectorOpNotIn, "x")), b: sel(map[string]string{"tier": "y"}), overlap: false},
		{name: "empty selector selects everything", a: sel(nil), b: sel(map[string]string{"app": "x"}), overlap: true},
		{name: "malformed operator", a: sel(nil, expr("app", "Near", "x")), b: sel(map[string]string{"app": "x"}), wantErr: true},
		{name: "malformed label value", a: sel(map[string]string{"app": "not a value"}), b: sel(map[string]string{"app": "x"}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, order := range [][2]*metav1.LabelSelector{{tt.a, tt.b}, {tt.b, tt.a}} {
				overlap, witness, err := SelectorsOverlap(order[0], order[1])
				if (err != nil) != tt.wantErr {
					t.Fatalf("err = %v, want error %v", err, tt.wantErr)
				}
				if err != nil {
					continue
				}
				if overlap != tt.overlap {
					t.Fatalf("SelectorsOverlap(%s, %s) = %v, want %v", metav1.FormatLabelSelector(order[0]), metav1.FormatLabelSelector(order[1]), overlap, tt.overlap)
				}
				if !overlap {
					continue
				}
				// The witness must really be selected by both: it is what the user is shown.
				for _, s := range order {
					ls, err := metav1.LabelSelectorAsSelector(s)
					if err != nil {
						t.Fatal(err)
					}
					if !ls.Matches(labels.Set(witness)) {
						t.Errorf("witness %q is not selected by %s", witness, metav1.FormatLabelSelector(s))
					}
				}
			}
		})
	}
}
