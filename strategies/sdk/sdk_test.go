package sdk

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/knqyf263/go-plugin/types/known/emptypb"

	"github.com/kubetrade/kubetrade/strategies/sdk/strategy"
)

type settings struct {
	Period int     `json:"period"`
	Size   float64 `json:"size"`
}

func TestParseConfigKeepsDefaultsForEmptyConfig(t *testing.T) {
	for _, raw := range []string{"", "  \n"} {
		got := settings{Period: 5, Size: 1}
		if err := ParseConfig(raw, &got); err != nil {
			t.Fatalf("ParseConfig(%q): %v", raw, err)
		}
		if got != (settings{Period: 5, Size: 1}) {
			t.Fatalf("ParseConfig(%q) changed the defaults: %+v", raw, got)
		}
	}
}

func TestParseConfigOverridesGivenKeys(t *testing.T) {
	got := settings{Period: 5, Size: 1}
	if err := ParseConfig(`{"size": 2.5}`, &got); err != nil {
		t.Fatal(err)
	}
	if got != (settings{Period: 5, Size: 2.5}) {
		t.Fatalf("got %+v", got)
	}
}

func TestParseConfigRejectsBadInput(t *testing.T) {
	for raw, want := range map[string]string{
		`{"perod": 3}`:     `unknown field "perod"`,
		`{"period": "x"}`:  "cannot unmarshal",
		`{"period": 3} {}`: "unexpected data",
		`[1]`:              "cannot unmarshal array",
	} {
		var got settings
		err := ParseConfig(raw, &got)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig(%q) = %v, want an error containing %q", raw, err, want)
		}
	}
}

func TestOrderBuilders(t *testing.T) {
	o := LimitOrder("BTCUSDT", Sell, 0.5, 101.25, "take profit")
	if o.GetOrderType() != strategy.OrderType_ORDER_TYPE_LIMIT || o.GetSide() != Sell ||
		o.GetQuantity() != 0.5 || o.GetPrice() != 101.25 || o.GetSymbol() != "BTCUSDT" {
		t.Fatalf("unexpected order %+v", o)
	}
	if o.GetReason().GetReason() != "strategy" || o.GetReason().GetMessage() != "take profit" {
		t.Fatalf("unexpected reason %+v", o.GetReason())
	}
	if MarketOrder("X", Buy, 1, 1, "").GetOrderType() != strategy.OrderType_ORDER_TYPE_MARKET {
		t.Fatal("MarketOrder is not a market order")
	}
}

func TestTimeRoundTrip(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	if got := Time(Timestamp(at)); !got.Equal(at) {
		t.Fatalf("round trip gave %v", got)
	}
	if !Time(nil).Equal(Epoch) {
		t.Fatalf("Time(nil) = %v, want the epoch", Time(nil))
	}
}

func TestFloat(t *testing.T) {
	for v, want := range map[float64]string{2: "2", 0.1: "0.1", 101.25: "101.25", -3: "-3"} {
		if got := Float(v); got != want {
			t.Errorf("Float(%v) = %q, want %q", v, got, want)
		}
	}
}

// logApi records Log calls; any other host call would panic on the nil interface.
type logApi struct {
	strategy.StrategyApi
	got []*strategy.LogRequest
}

func (a *logApi) Log(_ context.Context, req *strategy.LogRequest) (*emptypb.Empty, error) {
	a.got = append(a.got, req)
	return &emptypb.Empty{}, nil
}

func TestLogPairsFields(t *testing.T) {
	api := &logApi{}
	if err := Log(context.Background(), api, LevelWarn, "hello", "a", "1", "b"); err != nil {
		t.Fatal(err)
	}
	if len(api.got) != 1 {
		t.Fatalf("got %d log calls", len(api.got))
	}
	req := api.got[0]
	if req.GetLevel() != LevelWarn || req.GetMessage() != "hello" {
		t.Fatalf("unexpected request %+v", req)
	}
	if f := req.GetFields(); len(f) != 2 || f["a"] != "1" || f["b"] != "" {
		t.Fatalf("unexpected fields %v", f)
	}
}
