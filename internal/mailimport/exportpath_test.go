package mailimport

import (
	"path/filepath"
	"testing"
)

// A mailbox named "." or ".." (an older store may hold one) never makes
// an export write outside its directory.
func TestExportPathsStayInside(t *testing.T) {
	for _, name := range []string{".", "..", "a/..", "../x", "a/./b", "..."} {
		for _, p := range []string{MaildirFolderPath("/srv/export", name), MboxPath("/srv/export", name)} {
			rel, err := filepath.Rel("/srv/export", p)
			if err != nil || !filepath.IsLocal(rel) || rel == "." {
				t.Errorf("mailbox %q goes to %s, outside /srv/export or onto it", name, p)
			}
		}
	}
}
