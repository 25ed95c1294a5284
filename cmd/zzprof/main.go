package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/auth"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/server"
)

func main() {
	dir, _ := os.MkdirTemp("/work", "prof")
	fmt.Println("dir", dir)
	files := config.StarterFiles(config.Starter{Hostname: "mx.example.org", Domain: "example.org", Admin: "bench", DataDir: "data", MapsDir: ".", SMTPListen: []string{"127.0.0.1:2700"}})
	for n, t := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(t), 0o644)
	}
	cfg, err := config.Load(filepath.Join(dir, "posthorn.toml"))
	if err != nil {
		panic(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "log"))
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(logf, nil)))
	if err != nil {
		panic(err)
	}
	h, _ := auth.Hash("x")
	srv.Store.CreateAccount(context.Background(), "bench", h)
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Run(ctx, time.Second)
	time.Sleep(300 * time.Millisecond)
	f, _ := os.Create("/tmp/cpu.prof")
	pprof.StartCPUProfile(f)
	start := time.Now()
	out, err := exec.Command("smtp-source", "-d", "-s", "20", "-m", os.Args[1], "-l", "4096", "-f", "a@remote.example", "-t", "bench@example.org", "127.0.0.1:2700").CombinedOutput()
	el := time.Since(start)
	pprof.StopCPUProfile()
	af, _ := os.Create("/tmp/allocs.prof")
	pprof.Lookup("allocs").WriteTo(af, 0)
	af.Close()
	fmt.Println(strings.TrimSpace(string(out)), err, el, "rate", float64(atoi(os.Args[1]))/el.Seconds())
	st, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "VmHWM") || strings.HasPrefix(l, "VmRSS") {
			fmt.Println(l)
		}
	}
	cancel()
	time.Sleep(time.Second)
}

func atoi(s string) int { n := 0; fmt.Sscan(s, &n); return n }
