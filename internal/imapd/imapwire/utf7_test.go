package imapwire

import "testing"

func TestModifiedUTF7(t *testing.T) {
	for _, tc := range []struct{ utf8, utf7 string }{
		// RFC 3501 section 5.1.3 example.
		{"~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"&", "&-"},
		{"A&B", "A&-B"},
		{"INBOX", "INBOX"},
		{"Entw\u00fcrfe", "Entw&APw-rfe"},
		{"\u00e9t\u00e9", "&AOk-t&AOk-"},
		{"\U0001F600", "&2D3eAA-"}, // surrogate pair
		{"a\tb", "a&AAk-b"},        // control characters are encoded too
		{"", ""},
	} {
		if got := EncodeMailbox(tc.utf8); got != tc.utf7 {
			t.Errorf("Encode(%q) = %q, want %q", tc.utf8, got, tc.utf7)
		}
		if got, err := DecodeMailbox(tc.utf7); err != nil || got != tc.utf8 {
			t.Errorf("Decode(%q) = %q, %v, want %q", tc.utf7, got, err, tc.utf8)
		}
	}
	for _, bad := range []string{
		"&",           // unterminated
		"&U,BTFw",     // unterminated
		"&Jjo!-",      // bad base64
		"&AGE-",       // encodes "a": must be sent as itself
		"&AOk-&AOk-",  // two adjacent runs
		"&AO-",        // leftover bits
		"&AOl-",       // non-zero padding bits
		"&2D0-",       // lone high surrogate
		"&3gA-",       // lone low surrogate
		"caf\xc3\xa9", // 8-bit
		"a\x00b",      // control
		"&AOk=-",      // "=" padding is not modified base64
	} {
		if got, err := DecodeMailbox(bad); err == nil {
			t.Errorf("Decode(%q) = %q, want error", bad, got)
		}
	}
}

func FuzzModifiedUTF7(f *testing.F) {
	f.Add("~peter/mail/&U,BTFw-/&ZeVnLIqe-")
	f.Add("&-&AOk-")
	f.Fuzz(func(t *testing.T, s string) {
		dec, err := DecodeMailbox(s)
		if err != nil {
			return
		}
		// Strict decoding means one encoding per name.
		if enc := EncodeMailbox(dec); enc != s {
			t.Fatalf("Decode(%q) = %q re-encodes as %q", s, dec, enc)
		}
	})
}
