package dsn

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// intro is the paragraph that heads each action's list of recipients in the
// human-readable part (RFC 6522 section 3: the first part explains the
// report to a person).
var intro = map[Action]string{
	ActionFailed: "Your message could not be delivered to the recipients below. " +
		"The mail system has given up on them and will not try again.",
	ActionDelayed: "Your message has not yet been delivered to the recipients below. " +
		"The mail system is still trying; you do not need to send the message again.",
	ActionDelivered: "Your message was delivered to the recipients below.",
	ActionRelayed: "Your message was passed on to the recipients below, to a mail server " +
		"that does not send delivery notifications, so you will get no further notice about them.",
	ActionExpanded: "Your message was delivered to the recipients below, which are lists " +
		"or aliases; it was passed on to their members.",
}

// actionOrder is the order of the sections in the text: the gravest first.
var actionOrder = []Action{ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded}

// humanText writes the first part: for each action, a paragraph and the
// recipients it applies to, with what the remote server said; then what the
// third part holds. Lines are CRLF-ended, wrapped at textWidth where spaces
// allow and never longer than maxLine plus a short indent.
func humanText(r *Report, recips []recipient, ret retPart) []byte {
	var b bytes.Buffer
	wrap(&b, "", "This is the mail system at "+r.ReportingMTA+".")
	for _, act := range actionOrder {
		first := true
		for _, rc := range recips {
			if rc.Action != act {
				continue
			}
			if first {
				b.WriteString("\r\n")
				wrap(&b, "", intro[act])
				first = false
			}
			b.WriteString("\r\n")
			wrap(&b, "  ", "<"+rc.final+">")
			wrap(&b, "      ", "Status: "+rc.Status)
			if rc.orig != "" {
				wrap(&b, "      ", "Original recipient: "+rc.orig)
			}
			if rc.RemoteMTA != "" {
				wrap(&b, "      ", "Remote server: "+rc.RemoteMTA)
			}
			if rc.diagnostic != "" {
				wrap(&b, "      ", "It said: "+rc.diagnostic)
			}
			if !rc.LastAttempt.IsZero() {
				wrap(&b, "      ", "Last attempt: "+rc.LastAttempt.Format(dateFormat))
			}
			if act == ActionDelayed && !rc.WillRetryUntil.IsZero() {
				wrap(&b, "      ", "Will retry until: "+rc.WillRetryUntil.Format(dateFormat))
			}
		}
	}

	b.WriteString("\r\n")
	var about strings.Builder
	about.WriteString("Your message")
	if r.QueueID != "" {
		about.WriteString(" (queue ID " + r.QueueID + ")")
	}
	if !r.ArrivalDate.IsZero() {
		about.WriteString(" was received here on " + r.ArrivalDate.Format(dateFormat) + ".")
	} else {
		about.WriteString(" is the one this report is about.")
	}
	switch {
	case ret.body == nil:
	case ret.full:
		about.WriteString(" It is attached below.")
	case ret.truncated:
		about.WriteString(" It was " + strconv.Itoa(len(r.Original)) + " bytes, more than the " +
			strconv.Itoa(r.MaxFull) + " bytes that are returned in full, so only its header is attached below.")
	default:
		about.WriteString(" Its header is attached below.")
	}
	wrap(&b, "", about.String())
	return b.Bytes()
}

// wrap writes s as lines of at most textWidth octets (indent included) where
// spaces allow, breaking words longer than maxLine so that no line reaches
// RFC 5322's limit of 998 octets.
func wrap(b *bytes.Buffer, indent, s string) {
	line := indent
	empty := true
	flush := func() {
		b.WriteString(line)
		b.WriteString("\r\n")
		line, empty = indent, true
	}
	for _, w := range strings.Fields(s) {
		for len(w) > maxLine {
			cut := maxLine
			for cut > 0 && !utf8.RuneStart(w[cut]) {
				cut--
			}
			if !empty {
				flush()
			}
			line += w[:cut]
			flush()
			w = w[cut:]
		}
		if !empty && len(line)+1+len(w) > textWidth {
			flush()
		}
		if !empty {
			line += " "
		}
		line += w
		empty = false
	}
	if !empty {
		flush()
	}
}
