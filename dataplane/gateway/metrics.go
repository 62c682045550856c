package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgw/mcpgw/dataplane/session"
)

// Metrics are the front door's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	sessions *session.Store
	state    StateSource
	bridge   *bridge
}

// knownMethods bounds the method label's cardinality.
var knownMethods = map[string]bool{
	"initialize": true, "ping": true, "tools/list": true, "tools/call": true,
	"prompts/list": true, "prompts/get": true, "resources/list": true,
	"resources/read": true, "resources/templates/list": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
	"completion/complete": true, "logging/setLevel": true,
	"server/discover": true, "subscriptions/listen": true,
	"tasks/get": true, "tasks/result": true, "tasks/cancel": true, "tasks/list": true,
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgw_edge_requests_total",
			Help: "MCP requests served, by backend, method and outcome.",
		}, []string{"backend", "method", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpgw_edge_request_duration_seconds",
			Help:    "Time from a request's arrival to its outcome, by backend, method and outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"backend", "method", "outcome"}),
	}
	reg.MustRegister(m.requests, m.latency, m)
	return m
}

var (
	sessionsDesc = prometheus.NewDesc("mcpgw_edge_sessions", "Live downstream MCP sessions.", nil, nil)
	backendDesc  = prometheus.NewDesc("mcpgw_edge_backend_up", "1 when the backend has an initialized connection.", []string{"backend"}, nil)
	configDesc   = prometheus.NewDesc("mcpgw_edge_state_seq", "Sequence number of the live state (bumps on config and catalog changes).", nil, nil)
	perPrinDesc  = prometheus.NewDesc("mcpgw_edge_backend_principal_sessions", "Open per-principal upstream sessions of a sessions: per_principal backend.", []string{"backend"}, nil)
	parkedDesc   = prometheus.NewDesc("mcpgw_edge_bridge_parked_calls", "Era-bridged calls parked waiting for their client's input, all principals.", nil, nil)
	overDesc     = prometheus.NewDesc("mcpgw_edge_bridge_parked_refused_total", "Era-bridged calls refused because their principal had the limit of calls parked.", nil, nil)
)

// Describe implements prometheus.Collector for the gauges read at scrape.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionsDesc
	ch <- backendDesc
	ch <- configDesc
	ch <- perPrinDesc
	ch <- parkedDesc
	ch <- overDesc
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.sessions != nil {
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(m.sessions.Len()))
	}
	if m.bridge != nil {
		parked, refused := m.bridge.heldStats()
		ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, float64(parked))
		ch <- prometheus.MustNewConstMetric(overDesc, prometheus.CounterValue, float64(refused))
	}
	if m.state == nil {
		return
	}
	st := m.state.Load()
	if st == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(configDesc, prometheus.GaugeValue, float64(st.Seq))
	for _, b := range st.Backends {
		v := 0.0
		if b.Healthy() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(backendDesc, prometheus.GaugeValue, v, b.Name())
		if b.Config().PerPrincipal {
			ch <- prometheus.MustNewConstMetric(perPrinDesc, prometheus.GaugeValue, float64(b.Principals()), b.Name())
		}
	}
}

func (m *Metrics) observe(rq *Request) {
	method := rq.Method
	if !knownMethods[method] {
		method = "other"
	}
	backend := rq.Backend
	if backend == "" {
		backend = "none"
	}
	labels := []string{backend, method, string(rq.Status)}
	m.requests.WithLabelValues(labels...).Inc()
	m.latency.WithLabelValues(labels...).Observe(rq.Latency.Seconds())
}
