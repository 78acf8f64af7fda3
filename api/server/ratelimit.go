package server

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigie-sante/vigie/api/auth"
)

// Limit is a token bucket: PerSecond calls a second on average, bursts of
// up to Burst.
type Limit struct {
	PerSecond float64
	Burst     int
}

// Unlimited is a Limit that never refuses.
var Unlimited = Limit{PerSecond: math.Inf(1)}

// DefaultLimits are the per-caller limits by role, and for anonymous
// callers (by client address) under the empty role.
var DefaultLimits = map[auth.Role]Limit{
	auth.RoleService:   {PerSecond: 2000, Burst: 4000},
	auth.RolePatient:   {PerSecond: 5, Burst: 20},
	auth.RoleAuditor:   {PerSecond: 100, Burst: 200},
	auth.RoleDPO:       {PerSecond: 20, Burst: 50},
	auth.RoleRegulator: {PerSecond: 50, Burst: 100},
	auth.RoleAdmin:     {PerSecond: 10, Burst: 20},
	"":                 {PerSecond: 50, Burst: 100},
}

// maxLimiters bounds the buckets kept; beyond it, full buckets (callers
// idle long enough to have their whole burst back, which a new bucket
// would give them too) are dropped.
const maxLimiters = 100_000

// limiters keeps one token bucket per caller. Safe for concurrent use.
type limiters struct {
	limits map[auth.Role]Limit
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiters(limits map[auth.Role]Limit, now func() time.Time) *limiters {
	l := &limiters{limits: map[auth.Role]Limit{}, now: now, buckets: map[string]*rate.Limiter{}}
	for r, lim := range DefaultLimits {
		l.limits[r] = lim
	}
	for r, lim := range limits {
		l.limits[r] = lim
	}
	return l
}

// allow reports whether the caller (key, of role; role "" for anonymous
// callers) may make one more call now.
func (l *limiters) allow(role auth.Role, key string) bool {
	lim := l.limits[role]
	if math.IsInf(lim.PerSecond, 1) {
		return true
	}
	now := l.now()
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiters {
			l.sweepLocked(now)
		}
		b = rate.NewLimiter(rate.Limit(lim.PerSecond), lim.Burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	return b.AllowN(now, 1)
}

// sweepLocked drops the full buckets.
func (l *limiters) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.buckets, k)
		}
	}
}
