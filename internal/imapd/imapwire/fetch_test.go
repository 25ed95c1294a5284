package imapwire

import "testing"

func TestFetchResponseName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"FLAGS", "FLAGS"},
		{"body.peek[]", "BODY[]"},
		{"BODY[]<10.20>", "BODY[]<10>"},
		{"BODY[1.2.MIME]", "BODY[1.2.MIME]"},
		{"BODY.PEEK[HEADER.FIELDS (Date \"X Y\" {1}\r\nZ)]", "BODY[HEADER.FIELDS (Date \"X Y\" Z)]"},
		{`BODY[3.HEADER.FIELDS.NOT (a "x]" "q\\\"z")]`, `BODY[3.HEADER.FIELDS.NOT (a "x]" "q\\\"z")]`},
		{"BINARY.PEEK[1.2]<0.5>", "BINARY[1.2]<0>"},
		{"BINARY.SIZE[4]", "BINARY.SIZE[4]"},
		{"BODY[TEXT]", "BODY[TEXT]"},
	} {
		cmd, err := parseOne(t, "a FETCH 1 "+tc.in+"\r\n")
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		items := cmd.Args.(*FetchCommand).Items
		if len(items) != 1 || items[0].ResponseName() != tc.want {
			t.Errorf("%q: got %+v, want %s", tc.in, items, tc.want)
		}
	}
}
