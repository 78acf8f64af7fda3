package ladonpolicy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"github.com/ory/ladon"
	"github.com/ory/ladon/compiler"
)

// Pattern is a ladon pattern (literal text with regular expressions between
// delimiters, e.g. "document/<.*>/stay-<[0-9]+>") compiled once, when the
// policy holding it is written. It matches exactly what ladon's default
// matcher matches.
type Pattern struct {
	tpl string
	re  *regexp2.Regexp
}

// CompilePattern compiles a ladon pattern with the delimiters < and >,
// with ladon's own compiler.
func CompilePattern(tpl string) (*Pattern, error) {
	return compilePattern(tpl, '<', '>')
}

func compilePattern(tpl string, start, end byte) (*Pattern, error) {
	re, err := compiler.CompileRegex(tpl, start, end)
	if err != nil {
		return nil, errors.New("pattern does not compile") // the pattern may hold health data: not in the error
	}
	return &Pattern{tpl: tpl, re: re}, nil
}

// Match reports whether s matches the pattern.
func (p *Pattern) Match(s string) (bool, error) {
	if !safeNeedle(s) {
		return false, errNeedle
	}
	if sh, ok := parseShape(p.tpl, '<', '>'); ok {
		return sh.match(s), nil
	}
	return p.re.MatchString(s)
}

// shape is a pattern of the form prefix<.*>suffix, or a literal. Such
// patterns match without a regular expression: for strings without
// control characters, "^" + QuoteMeta(prefix) + "(.*)" + QuoteMeta(suffix)
// + "$" matches exactly the strings with that prefix and suffix, not
// overlapping.
type shape struct {
	prefix, suffix string
	any            bool // has the <.*> group
}

func (s shape) match(needle string) bool {
	if !s.any {
		return needle == s.prefix
	}
	return len(needle) >= len(s.prefix)+len(s.suffix) &&
		strings.HasPrefix(needle, s.prefix) && strings.HasSuffix(needle, s.suffix)
}

// parseShape recognizes the patterns that are a shape: at most one
// expression, and that expression exactly ".*", with no stray delimiter in
// the literal text (which ladon rejects as unbalanced).
func parseShape(tpl string, start, end byte) (shape, bool) {
	i := strings.IndexByte(tpl, start)
	if i < 0 {
		if strings.IndexByte(tpl, end) >= 0 {
			return shape{}, false
		}
		return shape{prefix: tpl}, true
	}
	rest := tpl[i+1:]
	if len(rest) < 3 || rest[0] != '.' || rest[1] != '*' || rest[2] != end {
		return shape{}, false
	}
	prefix, suffix := tpl[:i], rest[3:]
	if strings.IndexByte(prefix, end) >= 0 || strings.IndexByte(suffix, start) >= 0 || strings.IndexByte(suffix, end) >= 0 {
		return shape{}, false
	}
	return shape{prefix: prefix, suffix: suffix, any: true}, true
}

// errNeedle is returned for a subject, action or resource with a control
// character or invalid UTF-8. Ladon's expressions treat newlines specially ('.' does not
// match one, '$' matches before a final one); Vigie never builds such a
// string (requests are validated), so rather than reproduce those corner
// cases the matcher refuses them, and the request is denied.
var errNeedle = errors.New("ladonpolicy: subject, action or resource holds a control character")

func safeNeedle(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// patternSource is implemented by policies that carry their patterns
// compiled.
type patternSource interface {
	compiledPattern(tpl string) (*Pattern, bool)
}

// Matcher implements ladon's matcher interface (the type of
// ladon.Ladon.Matcher) without compiling anything per request: literal
// patterns compare, patterns of the form prefix<.*>suffix compare prefix
// and suffix, and other patterns must have been compiled when their
// policy was written (policies from [Manager], [Engine] and the
// national rules carry them). A policy with an uncompiled pattern is an
// error, and ladon denies the request.
//
// Ladon's default matcher instead compiles patterns on first use into a
// 512-entry LRU cache: with per-patient patterns the cache thrashes and
// every request compiles regular expressions.
//
// Matcher is immutable and safe for concurrent use.
type Matcher struct {
	// checked: the caller has checked every needle with safeNeedle.
	checked bool
}

// Matches reports whether needle matches one of the patterns in haystack
// of policy p.
func (m Matcher) Matches(p ladon.Policy, haystack []string, needle string) (bool, error) {
	start, end := p.GetStartDelimiter(), p.GetEndDelimiter()
	for _, h := range haystack {
		if strings.IndexByte(h, start) < 0 {
			if h == needle {
				return true, nil
			}
			continue
		}
		if !m.checked && !safeNeedle(needle) {
			return false, errNeedle
		}
		if len(h) == 4 && h[0] == start && h[1] == '.' && h[2] == '*' && h[3] == end {
			return true, nil // <.*>: anything (without a newline)
		}
		if sh, ok := parseShape(h, start, end); ok {
			if sh.match(needle) {
				return true, nil
			}
			continue
		}
		ps, ok := p.(patternSource)
		if !ok {
			return false, fmt.Errorf("ladonpolicy: policy %q has a pattern not compiled when written", p.GetID())
		}
		pat, ok := ps.compiledPattern(h)
		if !ok {
			return false, fmt.Errorf("ladonpolicy: policy %q has a pattern not compiled when written", p.GetID())
		}
		m, err := pat.re.MatchString(needle)
		if err != nil {
			return false, fmt.Errorf("ladonpolicy: match pattern of policy %q: %w", p.GetID(), err)
		}
		if m {
			return true, nil
		}
	}
	return false, nil
}

// compilePatterns compiles the patterns among lists that are not shapes.
func compilePatterns(start, end byte, lists ...[]string) (map[string]*Pattern, error) {
	var out map[string]*Pattern
	for _, l := range lists {
		for _, h := range l {
			if strings.IndexByte(h, start) < 0 {
				continue
			}
			if _, ok := parseShape(h, start, end); ok {
				// Still check that ladon's compiler accepts it.
				if _, err := compiler.CompileRegex(h, start, end); err != nil {
					return nil, errors.New("pattern does not compile")
				}
				continue
			}
			if _, done := out[h]; done {
				continue
			}
			p, err := compilePattern(h, start, end)
			if err != nil {
				return nil, err
			}
			if out == nil {
				out = make(map[string]*Pattern)
			}
			out[h] = p
		}
	}
	return out, nil
}
