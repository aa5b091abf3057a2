package host

import (
	"errors"
	"testing"
)

func TestParseAPIVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    apiVersion
		wantErr bool
	}{
		{"1.2.3", apiVersion{1, 2, 3, ""}, false},
		{"v1.2.3", apiVersion{1, 2, 3, ""}, false},
		{"0.0.0", apiVersion{0, 0, 0, ""}, false},
		{"1.2.3-rc.1", apiVersion{1, 2, 3, "-rc.1"}, false},
		{"1.2.3+build.5", apiVersion{1, 2, 3, "+build.5"}, false},
		{"", apiVersion{}, true},
		{"1.2", apiVersion{}, true},
		{"1.2.3.4", apiVersion{}, true},
		{"01.2.3", apiVersion{}, true},
		{"1.x.3", apiVersion{}, true},
		{"1.2.3-", apiVersion{}, true},
		{"-1.2.3", apiVersion{}, true},
		{"1..3", apiVersion{}, true},
		{"99999999999.0.0", apiVersion{}, true},
	}
	for _, tt := range tests {
		got, err := parseAPIVersion(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseAPIVersion(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("parseAPIVersion(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
}

func TestCheckAPIChange(t *testing.T) {
	tests := []struct {
		from, to   string
		allowMinor bool
		want       error
		wantAnyErr bool
	}{
		{"", "7.0.0", false, nil, false}, // nothing to compare with
		{"1.0.0", "1.0.0", false, nil, false},
		{"1.0.0", "1.0.9", false, nil, false},
		{"1.0.0", "v1.0.1", false, nil, false},
		{"1.0.0", "1.1.0", false, ErrAPIMinor, true},
		{"1.1.0", "1.0.0", false, ErrAPIMinor, true},
		{"1.0.0", "1.1.0", true, nil, false},
		{"1.0.0", "2.0.0", true, ErrAPIMajor, true},
		{"1.0.0", "0.9.0", true, ErrAPIMajor, true},
		{"1.0.0", "garbage", true, nil, true},
	}
	for _, tt := range tests {
		err := checkAPIChange(tt.from, tt.to, tt.allowMinor)
		if (err != nil) != tt.wantAnyErr || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("checkAPIChange(%q, %q, allowMinor=%v) = %v; want %v", tt.from, tt.to, tt.allowMinor, err, tt.want)
		}
	}
}
