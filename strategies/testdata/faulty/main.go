//go:build wasip1

// Command faulty is a test strategy that misbehaves on demand, for testing
// how a host contains a broken strategy. It is not an example to follow.
//
// Config (every setting defaults to off):
//
//	{"panicEvery": 0, "errorEvery": 0, "loopOnBar": 0, "allocOnBar": 0, "initError": false}
//
// Initialize fails with "deliberate init error" when initError is true.
// ProcessData counts bars in a Go global (1-based, so the count restarts if
// the host re-instantiates the module) and on bar N does the first that
// applies:
//
//	panicEvery > 0 && N % panicEvery == 0   Go panic: the runtime prints it and
//	                                        exits (proc_exit 2), a trap for the host
//	errorEvery > 0 && N % errorEvery == 0   returns the error "deliberate error on bar N"
//	loopOnBar == N                          spins forever (needs a host timeout)
//	allocOnBar == N                         allocates memory until it runs out
//	otherwise                               logs message "check", fields {"step": "ok", "bar": "N"}
package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/knqyf263/go-plugin/types/known/emptypb"

	"github.com/kubetrade/kubetrade/strategies/sdk"
	"github.com/kubetrade/kubetrade/strategies/sdk/strategy"
)

func main() {}

func init() {
	strategy.RegisterTradingStrategy(&faulty{
		Info: sdk.Info{
			StrategyName: "faulty",
			Identifier:   "io.kubetrade.testdata.faulty",
			Description:  "Test strategy that panics, fails, hangs or exhausts memory on demand.",
			ConfigSchema: configSchema,
		},
		api: strategy.NewStrategyApi(),
	})
}

const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "faulty config",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "panicEvery": {"type": "integer", "minimum": 0, "default": 0},
    "errorEvery": {"type": "integer", "minimum": 0, "default": 0},
    "loopOnBar": {"type": "integer", "minimum": 0, "default": 0},
    "allocOnBar": {"type": "integer", "minimum": 0, "default": 0},
    "initError": {"type": "boolean", "default": false}
  }
}`

type config struct {
	PanicEvery int  `json:"panicEvery"`
	ErrorEvery int  `json:"errorEvery"`
	LoopOnBar  int  `json:"loopOnBar"`
	AllocOnBar int  `json:"allocOnBar"`
	InitError  bool `json:"initError"`
}

type faulty struct {
	sdk.Info
	api strategy.StrategyApi
	cfg config
}

// bars counts ProcessData calls since the module was instantiated.
var bars int

// Sinks the compiler cannot prove unused, so the loop and the allocations
// are really executed.
var (
	spins  uint64
	hoard  [][]byte
	hoardN int
)

func (f *faulty) Initialize(
	_ context.Context, req *strategy.InitializeRequest,
) (*emptypb.Empty, error) {
	var cfg config
	if err := sdk.ParseConfig(req.GetConfig(), &cfg); err != nil {
		return nil, err
	}
	if cfg.InitError {
		return nil, errors.New("deliberate init error")
	}
	f.cfg = cfg
	return &emptypb.Empty{}, nil
}

func (f *faulty) ProcessData(
	ctx context.Context, _ *strategy.ProcessDataRequest,
) (*emptypb.Empty, error) {
	bars++
	n := bars
	switch {
	case f.cfg.PanicEvery > 0 && n%f.cfg.PanicEvery == 0:
		panic(fmt.Sprintf("deliberate panic on bar %d", n))
	case f.cfg.ErrorEvery > 0 && n%f.cfg.ErrorEvery == 0:
		return nil, fmt.Errorf("deliberate error on bar %d", n)
	case f.cfg.LoopOnBar == n:
		for {
			spins++
		}
	case f.cfg.AllocOnBar == n:
		for {
			// 16 MiB at a time, each page touched so it is really committed.
			chunk := make([]byte, 16<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1
			}
			hoard = append(hoard, chunk)
			hoardN += len(chunk)
		}
	}
	err := sdk.Log(ctx, f.api, sdk.LevelInfo, "check", "step", "ok", "bar", strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
