package metrics

import "net/http"

// Default holds posthorn's metrics: the families below. The server serves it
// on [metrics] listen at /metrics.
var Default = NewRegistry()

// The families. Their names are listed in the README's "Metrics" section;
// keep the two in step.
var (
	connAccepted = Default.NewCounterVec("posthorn_connections_accepted_total",
		"Connections accepted and given a session, by server (smtp, submission, pop3, imap).", "server")
	connRefused = Default.NewCounterVec("posthorn_connections_refused_total",
		"Connections closed right after accept, by server and reason (too_many, too_many_from_ip, shutting_down, no_session).", "server", "reason")
	connLive = Default.NewGaugeVec("posthorn_connections_live",
		"Sessions open now, by server.", "server")

	smtpTransactions = Default.NewCounterVec("posthorn_smtp_transactions_total",
		"SMTP mail transactions ended, by server (smtp, submission) and result: accepted (2xx after the message), rejected_4xx, rejected_5xx, aborted (RSET, a new EHLO, a disconnect).",
		"server", "result")

	commands = Default.NewCounterVec("posthorn_commands_total",
		"POP3 and IMAP commands answered, by server and result (imap: ok, no, bad; pop3: ok, err).", "server", "result")
	sessionsEnded = Default.NewCounterVec("posthorn_sessions_ended_total",
		"POP3 and IMAP sessions ended, by server and reason.", "server", "reason")

	queueDeliveries = Default.NewCounterVec("posthorn_queue_deliveries_total",
		"Delivery attempts of the outbound queue, one per recipient, by result (sent, deferred, bounced).", "result")

	loginFailures = Default.NewCounterVec("posthorn_login_failures_total",
		"Failed logins, by protocol (smtp, pop3, imap, web) and reason (wrong_password, unknown_user, throttled, malformed, authzid, other).",
		"protocol", "reason")

	storeDuration = Default.NewHistogramVec("posthorn_store_duration_seconds",
		"Time taken by the store's durable writes, by operation (deliver: SMTP and local mail; append: IMAP APPEND, drafts, sent mail).",
		DurationBuckets, "op")
	storeErrors = Default.NewCounterVec("posthorn_store_errors_total",
		"Store writes that returned an error, by operation.", "op")
)

// Gauges the server sets from the store at each scrape.
var (
	QueueMessages  = Default.NewGauge("posthorn_queue_messages", "Messages on the outbound queue (held ones included).")
	QueueOldestAge = Default.NewGauge("posthorn_queue_oldest_age_seconds", "Age of the oldest message on the outbound queue; 0 when it is empty.")
)

// Deliveries of the outbound queue, by result (internal/queue).
var (
	DeliveriesSent     = queueDeliveries.With("sent")
	DeliveriesDeferred = queueDeliveries.With("deferred")
	DeliveriesBounced  = queueDeliveries.With("bounced")
)

// Conn are the connection metrics of one protocol server (internal/netserve).
type Conn struct {
	Accepted *Counter
	Live     *Gauge
	Refused  Fixed // by the server's refusal reason
}

// ConnMetrics resolves the connection metrics of server; refusedBy maps the
// caller's refusal reasons to label values.
func ConnMetrics(server string, refusedBy map[string]string) *Conn {
	return &Conn{
		Accepted: connAccepted.With(server),
		Live:     connLive.With(server),
		Refused:  connRefused.Fixed([]string{server}, refusedBy),
	}
}

// SMTPTx counts the SMTP transactions of one server (internal/smtpd).
type SMTPTx struct {
	Accepted, Rejected4xx, Rejected5xx, Aborted *Counter
}

// SMTPTransactions resolves the transaction counters of server ("smtp",
// "submission").
func SMTPTransactions(server string) *SMTPTx {
	return &SMTPTx{
		Accepted:    smtpTransactions.With(server, "accepted"),
		Rejected4xx: smtpTransactions.With(server, "rejected_4xx"),
		Rejected5xx: smtpTransactions.With(server, "rejected_5xx"),
		Aborted:     smtpTransactions.With(server, "aborted"),
	}
}

// End counts a transaction by how it ended: result is the final reply
// ("250 2.0.0 ...", "452 4.3.1 ...") or a word for a transaction that had
// none ("RSET", "disconnected"). The reply's first digit is its class (RFC
// 5321 section 4.2.1).
func (t *SMTPTx) End(result string) {
	c := t.Aborted
	if len(result) >= 3 && result[1] >= '0' && result[1] <= '9' && result[2] >= '0' && result[2] <= '9' {
		switch result[0] {
		case '2':
			c = t.Accepted
		case '4':
			c = t.Rejected4xx
		case '5':
			c = t.Rejected5xx
		}
	}
	c.Inc()
}

// Commands resolves the command counters of server by result; byResult maps
// the caller's status words ("OK", "-ERR") to label values.
func Commands(server string, byResult map[string]string) Fixed {
	return commands.Fixed([]string{server}, byResult)
}

// SessionEnds resolves the session-end counters of server; byReason maps the
// caller's end reasons to label values.
func SessionEnds(server string, byReason map[string]string) Fixed {
	return sessionsEnded.Fixed([]string{server}, byReason)
}

// LoginFailures resolves the login failure counters of protocol; byReason
// maps the caller's reasons to label values.
func LoginFailures(protocol string, byReason map[string]string) Fixed {
	return loginFailures.Fixed([]string{protocol}, byReason)
}

// Handler serves the registry in the text format; before, when not nil, runs
// first (the server refreshes its scrape-time gauges there).
func (r *Registry) Handler(before func(*http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if before != nil {
			before(req)
		}
		w.Header().Set("Content-Type", ContentType)
		r.WriteText(w)
	})
}
