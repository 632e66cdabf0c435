//go:build wasip1

// Command sma is an example strategy: a simple-moving-average crossover.
//
// It buys `quantity` when the fast SMA of the closes crosses above the slow
// SMA while flat (holding less than a tenth of `quantity`), and sells the
// whole position when the fast SMA crosses back below. Closes are kept in memory, one ring per symbol; the first bar
// of a symbol seeds its ring from the host's window cache with GetRange, so
// a host-side warm-up lets the strategy trade from its first live bar.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o sma.wasm .
package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/knqyf263/go-plugin/types/known/emptypb"

	"github.com/kubetrade/kubetrade/strategies/sdk"
	"github.com/kubetrade/kubetrade/strategies/sdk/strategy"
)

func main() {}

func init() {
	strategy.RegisterTradingStrategy(&smaCrossover{
		Info: sdk.Info{
			StrategyName: "sma-crossover",
			Identifier:   "io.kubetrade.examples.sma",
			Description: "Simple moving-average crossover: buys when the fast SMA of the " +
				"closes crosses above the slow SMA while flat, sells the whole " +
				"position when it crosses back below.",
			ConfigSchema: configSchema,
		},
		api:   strategy.NewStrategyApi(),
		rings: map[string]*ring{},
	})
}

const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "sma-crossover config",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "fastPeriod": {
      "type": "integer", "minimum": 1, "default": 5,
      "description": "Bars in the fast moving average; must be less than slowPeriod."
    },
    "slowPeriod": {
      "type": "integer", "minimum": 2, "default": 20,
      "description": "Bars in the slow moving average."
    },
    "quantity": {
      "type": "number", "exclusiveMinimum": 0, "default": 1,
      "description": "Quantity bought on each upward crossover."
    }
  }
}`

type config struct {
	FastPeriod int     `json:"fastPeriod"`
	SlowPeriod int     `json:"slowPeriod"`
	Quantity   float64 `json:"quantity"`
}

func (c config) validate() error {
	var problems []string
	if c.FastPeriod <= 0 {
		problems = append(problems, fmt.Sprintf("fastPeriod must be > 0, got %d", c.FastPeriod))
	}
	if c.SlowPeriod <= 0 {
		problems = append(problems, fmt.Sprintf("slowPeriod must be > 0, got %d", c.SlowPeriod))
	}
	if c.FastPeriod >= c.SlowPeriod {
		problems = append(problems, fmt.Sprintf(
			"fastPeriod (%d) must be less than slowPeriod (%d)", c.FastPeriod, c.SlowPeriod))
	}
	if !(c.Quantity > 0) { // also rejects NaN
		problems = append(problems, fmt.Sprintf("quantity must be > 0, got %v", c.Quantity))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

type smaCrossover struct {
	sdk.Info
	api   strategy.StrategyApi
	cfg   config
	rings map[string]*ring // closes per symbol, oldest first
}

func (s *smaCrossover) Initialize(
	_ context.Context, req *strategy.InitializeRequest,
) (*emptypb.Empty, error) {
	cfg := config{FastPeriod: 5, SlowPeriod: 20, Quantity: 1}
	if err := sdk.ParseConfig(req.GetConfig(), &cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	s.cfg = cfg
	clear(s.rings) // a re-initialised strategy starts from the host's window again
	return &emptypb.Empty{}, nil
}

func (s *smaCrossover) ProcessData(
	ctx context.Context, req *strategy.ProcessDataRequest,
) (*emptypb.Empty, error) {
	bar := req.GetData()
	if bar == nil {
		return nil, errors.New("ProcessData without a bar")
	}
	closes, err := s.closes(ctx, bar)
	if err != nil {
		return nil, err
	}
	// One more close than the slow period gives both this bar's and the
	// previous bar's averages, which is all a crossover needs.
	if closes.len() < s.cfg.SlowPeriod+1 {
		return &emptypb.Empty{}, nil
	}
	fast, slow := closes.mean(s.cfg.FastPeriod, 0), closes.mean(s.cfg.SlowPeriod, 0)
	prevFast, prevSlow := closes.mean(s.cfg.FastPeriod, 1), closes.mean(s.cfg.SlowPeriod, 1)
	crossedUp := prevFast <= prevSlow && fast > slow
	crossedDown := prevFast >= prevSlow && fast < slow
	if !crossedUp && !crossedDown {
		return &emptypb.Empty{}, nil
	}

	// Only a crossover needs the position, so only then ask the host for it.
	pos, err := s.api.GetPosition(ctx, &strategy.GetPositionRequest{Symbol: bar.GetSymbol()})
	if err != nil {
		return nil, err
	}
	// A venue that takes its fee in the coin bought (Binance) can leave a remainder
	// below its lot size once the position is sold; nothing can sell it, so a position
	// under a tenth of an order counts as flat.
	held := pos.GetQuantity()
	flat := held < s.cfg.Quantity/10
	var order *strategy.ExecuteOrder
	switch {
	case crossedUp && flat:
		order = sdk.MarketOrder(bar.GetSymbol(), sdk.Buy, s.cfg.Quantity, bar.GetClose(),
			"fast SMA crossed above slow")
	case crossedDown && !flat:
		order = sdk.MarketOrder(bar.GetSymbol(), sdk.Sell, held, bar.GetClose(),
			"fast SMA crossed below slow")
	default:
		return &emptypb.Empty{}, nil
	}
	order.StrategyName = s.StrategyName
	if err := sdk.Log(ctx, s.api, sdk.LevelInfo, order.GetReason().GetMessage(),
		"symbol", bar.GetSymbol(), "side", strategy.PurchaseType_name[int32(order.GetSide())],
		"quantity", sdk.Float(order.GetQuantity()), "close", sdk.Float(bar.GetClose()),
		"fast", sdk.Float(fast), "slow", sdk.Float(slow)); err != nil {
		return nil, err
	}
	if _, err := s.api.PlaceOrder(ctx, order); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// closes returns the symbol's ring with this bar's close appended. The first
// bar of a symbol seeds the ring from the host's window cache.
func (s *smaCrossover) closes(ctx context.Context, bar *strategy.MarketData) (*ring, error) {
	r, seen := s.rings[bar.GetSymbol()]
	if !seen {
		r = newRing(s.cfg.SlowPeriod + 1)
		s.rings[bar.GetSymbol()] = r
		history, err := s.api.GetRange(ctx, &strategy.GetRangeRequest{
			Symbol:    bar.GetSymbol(),
			StartTime: sdk.Timestamp(sdk.Epoch),
			EndTime:   bar.GetTime(),
		})
		if err != nil {
			return nil, err
		}
		// The window normally ends with this very bar; keep only the bars
		// before it so the bar is counted once whether or not it is there.
		now := sdk.Time(bar.GetTime())
		older := history.GetData()
		sort.SliceStable(older, func(i, j int) bool {
			return sdk.Time(older[i].GetTime()).Before(sdk.Time(older[j].GetTime()))
		})
		for _, past := range older {
			if sdk.Time(past.GetTime()).Before(now) {
				r.push(past.GetClose())
			}
		}
	}
	r.push(bar.GetClose())
	return r, nil
}

// ring keeps the most recent closes in a fixed-size circular buffer.
type ring struct {
	values []float64
	next   int // index the next push writes to
	count  int // values held, at most len(values)
}

func newRing(size int) *ring { return &ring{values: make([]float64, size)} }

func (r *ring) len() int { return r.count }

func (r *ring) push(v float64) {
	r.values[r.next] = v
	r.next = (r.next + 1) % len(r.values)
	r.count = min(r.count+1, len(r.values))
}

// mean averages the n values that end `back` pushes before the newest one.
func (r *ring) mean(n, back int) float64 {
	sum := 0.0
	for i := range n {
		idx := (r.next - 1 - back - i) % len(r.values)
		if idx < 0 {
			idx += len(r.values)
		}
		sum += r.values[idx]
	}
	return sum / float64(n)
}
