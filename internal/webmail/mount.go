package webmail

import "net/http"

// Mount serves h at pattern beside the webmail's own pages, outside its
// login and CSRF layer: for documents any client may fetch (the mail
// programs' autoconfig, internal/autoconfig). Call it before Serve.
func (s *Server) Mount(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }
