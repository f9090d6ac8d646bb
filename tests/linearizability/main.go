// Command kvlin drives a kvstore cluster from concurrent clients, records the history of
// reads, writes, deletes and compare-and-sets, and checks it for linearizability with
// Porcupine.
//
//	kvlin --urls http://127.0.0.1:8080,http://127.0.0.1:8081 --topic lin-$RANDOM
//
// Exit status: 0 linearizable, 1 not, 2 usage/setup error or check timed out, 3 too few
// operations had a definite outcome to mean anything.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

func mainArgs(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintf(stderr, "kvlin: %v\n", err)
		}
		return exitSetup
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sum, err := run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "kvlin: %v (seed=%d)\n", err, cfg.Seed)
		sum.Error = err.Error()
	}
	line, _ := json.Marshal(sum)
	fmt.Fprintln(stdout, string(line))
	return sum.ExitCode()
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("kvlin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	urls := fs.String("urls", "", "comma-separated replica base URLs, e.g. http://127.0.0.1:8080,http://127.0.0.1:8081")
	fs.StringVar(&cfg.Topic, "topic", "", "topic to use (required; a fresh one per run)")
	fs.IntVar(&cfg.Keys, "keys", 4, "number of keys, named lin-<i>")
	fs.IntVar(&cfg.Clients, "clients", 16, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long the clients run")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the clients' choices (default: time-based)")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 60*time.Second, "how long Porcupine may search")
	fs.BoolVar(&cfg.Spread, "spread", true, "pick a random replica per request; false: each client sticks to replica id % n")
	fs.StringVar(&cfg.HTML, "html", "", "write Porcupine's visualization here when the check fails (default: $TMPDIR/kvlin-<seed>.html)")
	fs.BoolVar(&cfg.HTMLAlways, "html-always", false, "write the visualization even when the history is linearizable")
	fs.StringVar(&cfg.Token, "token", "", "bearer token for the Authorization header")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	seeded := false
	fs.Visit(func(f *flag.Flag) { seeded = seeded || f.Name == "seed" })
	if !seeded {
		cfg.Seed = time.Now().UnixNano()
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, u := range strings.Split(*urls, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		parsed, err := url.Parse(u)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return cfg, fmt.Errorf("--urls: %q is not an http(s) URL", u)
		}
		cfg.URLs = append(cfg.URLs, u)
	}
	switch {
	case len(cfg.URLs) == 0:
		return cfg, fmt.Errorf("--urls is required")
	case cfg.Topic == "":
		return cfg, fmt.Errorf("--topic is required")
	case cfg.Keys < 1 || cfg.Clients < 1:
		return cfg, fmt.Errorf("--keys and --clients must be at least 1")
	case cfg.Duration <= 0 || cfg.Timeout <= 0 || cfg.CheckTimeout <= 0:
		return cfg, fmt.Errorf("--duration, --timeout and --check-timeout must be positive")
	}
	return cfg, nil
}
