//go:build tools

// Package tools pins the modules that posthorn's packages and tests use, so that the
// module graph does not change under concurrent work.
package tools

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/term"
	_ "modernc.org/sqlite"
)
