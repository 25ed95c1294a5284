package mailimport

import "strings"

// spoolFixture is a /var/mail spool as Sendmail's mail.local and a mail
// reader leave it: read and unread mail, flags, "From " inside bodies (one
// quoted, one not after an empty line), a header-only message, a field
// folded over lines, and a line longer than the reader's buffer.
var spoolFixture = "From alice@example.org Tue Mar  4 05:06:07 2009\n" +
	"Return-Path: <alice@example.org>\n" +
	"Received: from mx.example.org by router.example.net; Tue, 4 Mar 2009 05:06:07 +0100\n" +
	"Received: from laptop by mx.example.org; Tue, 4 Mar 2009 05:06:00 +0100\n" +
	"Date: Tue, 4 Mar 2009 05:05:00 +0100\n" +
	"Message-ID: <read@example.org>\n" +
	"Subject: read one\n" +
	"Status: RO\n" +
	"X-Status: AF\n" +
	"\n" +
	"Hello,\n" +
	">From the start it was quoted.\n" +
	">>From here too.\n" +
	"Regards,\nFrom alice (a \"From \" line after text, unquoted).\n" +
	"\n" +
	"From bob@example.org Wed Mar  5 10:00:00 2009\n" +
	"Date: Wed, 5 Mar 2009 10:00:00 +0000\n" +
	"Message-ID:\n" +
	" <folded@example.org>\n" +
	"Delivered-To: pp@router.example.net\n" +
	"X-Delivery-ID: 42\n" +
	"x-delivery-id: lower case is not hashed by popa3d\n" +
	"Subject: unread\n" +
	"Status: O\n" +
	"\n" +
	"said:\n" +
	"From the other side, after a text line: still the body.\n" +
	"\n" +
	"From MAILER-DAEMON Thu Mar  6 00:00:01 2009\n" +
	"Subject: header only\n" +
	"Received: from a by b\n" +
	"\n" +
	"From carol@example.org Fri Mar  7 12:34:56 2009\n" +
	"Subject: long\n" +
	"X-Long: " + strings.Repeat("x", 300<<10) + "\n" +
	"\n" +
	"the end\n"
