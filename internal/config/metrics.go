package config

// Metrics configures the admin listener: Prometheus metrics at /metrics and
// a health check at /healthz (internal/metrics, internal/server).
type Metrics struct {
	// Listen serves plain HTTP with no authentication: give it a loopback
	// or private address ("127.0.0.1:9090"), never a public one — the
	// metrics tell who is busy and the health check makes the server dial
	// its own ports. Empty (the default): no metrics listener.
	Listen Listeners `toml:"listen"`
}

func (c *Config) validateMetrics(bad func(key, format string, args ...any)) {
	for _, a := range c.Metrics.Listen {
		if err := checkHostPort(a); err != nil {
			bad("metrics.listen", "%v", err)
		}
	}
}
