package ladonpolicy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

	"github.com/ory/ladon"
)

// Pattern is a ladon pattern (literal text with regular expressions between
// delimiters, e.g. "document/<.*>/stay-<[0-9]+>") compiled once, when the
// policy holding it is written. It is ladon's template, matched with Go's
// regexp: in time linear in the length of the string, RE2 semantics.
//
// Ladon's own compiler builds the same regular expression
// ("^" + quoted literal text + "(" + expression + ")" + … + "$") for the
// backtracking engine dlclark/regexp2, whose time is exponential for some
// expressions, as "(a+)+b", and which gives up after 250 ms with an error.
// The two engines agree on the patterns of a patient's consent, which
// keep to the portable subset (see [consent.PortableExpression]).
type Pattern struct {
	tpl string
	re  *regexp.Regexp
}

// CompilePattern compiles a ladon pattern with the delimiters < and >.
func CompilePattern(tpl string) (*Pattern, error) {
	return compilePattern(tpl, '<', '>')
}

// errPattern is the error of a pattern that does not compile: it never
// quotes the pattern, which may hold health data (a document's name).
var errPattern = errors.New("pattern does not compile")

func compilePattern(tpl string, start, end byte) (*Pattern, error) {
	re, err := compileTemplate(tpl, start, end)
	if err != nil {
		return nil, err
	}
	return &Pattern{tpl: tpl, re: re}, nil
}

// compileTemplate compiles a ladon template as ladon's compiler does
// (balanced delimiters; each expression a regular expression on its own),
// for Go's regexp.
func compileTemplate(tpl string, start, end byte) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteByte('^')
	level, open, last := 0, 0, 0
	for i := 0; i < len(tpl); i++ {
		switch tpl[i] {
		case start:
			if level++; level == 1 {
				open = i
			}
		case end:
			if level--; level < 0 {
				return nil, errPattern
			} else if level == 0 {
				expr := tpl[open+1 : i]
				if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
					return nil, errPattern
				}
				b.WriteString(regexp.QuoteMeta(tpl[last:open]))
				b.WriteByte('(')
				b.WriteString(expr)
				b.WriteByte(')')
				last = i + 1
			}
		}
	}
	if level != 0 {
		return nil, errPattern
	}
	b.WriteString(regexp.QuoteMeta(tpl[last:]))
	b.WriteByte('$')
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, errPattern
	}
	return re, nil
}

// Match reports whether s matches the pattern. It fails only for a
// string with a control character or invalid UTF-8 (see [Matcher]).
func (p *Pattern) Match(s string) (bool, error) {
	if !safeNeedle(s) {
		return false, errNeedle
	}
	if sh, ok := parseShape(p.tpl, '<', '>'); ok {
		return sh.match(s), nil
	}
	return p.re.MatchString(s), nil
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
// character or invalid UTF-8. Regular expressions treat newlines
// specially ('.' does not match one, and ladon's engine matches '$' before
// a final one, Go's does not); Vigie never builds such a string (requests
// are validated), so the matcher refuses them, and the request is denied.
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
// error, and ladon denies the request. Matching takes time linear in the
// length of the needle (Go's regexp, RE2 semantics: see [Pattern]).
//
// Ladon's default matcher instead compiles patterns on first use into a
// 512-entry LRU cache, for a backtracking engine: with per-patient
// patterns the cache thrashes and every request compiles regular
// expressions, and some expressions take exponential time.
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
		if pat.re.MatchString(needle) {
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
				// Still check that it compiles, as ladon would.
				if _, err := compileTemplate(h, start, end); err != nil {
					return nil, err
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
