//go:build wasip1

// Command hostcheck is a test strategy that exercises the host functions a
// live session depends on and reports what it saw through the `log` host
// function, so a host implementation can be checked end to end.
//
// Config: {"symbol": "BTCUSDT"} runs the script below; {"symbol": ...,
// "mode": "trap"} runs the trap check instead. Bars of other symbols are
// ignored. The bar counter N (1-based) lives in the host's strategy cache
// under key "bar" and is written before anything else in the call, so a
// call that traps later does not replay its bar.
//
// Every report is one `log` call at level INFO with message "check" and
// fields "step" (below), "bar" (N) and the step's own fields. Numbers are
// shortest round-trip decimals ("2", "101.25"), times RFC 3339 in UTC
// ("2024-01-02T03:04:00Z"), order statuses the enum names
// ("ORDER_STATUS_PENDING"), id lists comma-separated and sorted.
//
// Script (mode "" or "script"); "expect" is what a correct host yields:
//
//	bar 1: place LIMIT BUY 1 at close*0.5, id "rest-1" (rests: far below the market)
//	  bar1.open_orders    count, ids          expect 1, "rest-1"
//	bar 2: get_order_status("rest-1"), then cancel_order("rest-1"); the bar's
//	       time is kept in the cache under "range.start" for bar 4
//	  bar2.status         order_id, value     expect rest-1, ORDER_STATUS_PENDING
//	  bar2.cancel         order_id, open_orders   expect rest-1, 0
//	bar 3: status of "rest-1", then place MARKET BUY 2 at close, id "mkt-1"
//	  bar3.status         order_id, value     expect rest-1, ORDER_STATUS_CANCELLED
//	  bar3.placed         order_id            expect mkt-1 (place_order returned)
//	bar 4: read back the fill, the account and the market-data window
//	  bar4.status         order_id, value     expect mkt-1, ORDER_STATUS_FILLED
//	  bar4.position       symbol, quantity, total_in_quantity, total_out_quantity,
//	                      total_in_amount, total_out_amount, total_in_fee,
//	                      total_out_fee       expect quantity 2, total_in_quantity 2
//	  bar4.positions      count, symbols      expect 1, the symbol
//	  bar4.account        balance, equity, buying_power, realized_pnl,
//	                      unrealized_pnl, total_fees, margin_used
//	  bar4.last           symbol, time, close expect this bar (read_last_data)
//	  bar4.range          start, end, count, first, last
//	                      get_range(symbol, range.start, bar 4's time):
//	                      expect count 3, first = bar 2's time, last = bar 4's time
//	bar 5: place LIMIT BUY 1 at close*0.5 ("rest-2") and at close*0.4 ("rest-3"),
//	       then cancel_all_orders
//	  bar5.open_orders    count, ids          expect 2, "rest-2,rest-3" (before cancelling)
//	  bar5.cancel_all     open_orders         expect 0
//	bar 6: statuses after cancel_all, then place MARKET SELL 1 at close, id "mkt-2"
//	  bar6.open_orders    count, ids          expect 0, ""
//	  bar6.status.rest-2  order_id, value     expect rest-2, ORDER_STATUS_CANCELLED
//	  bar6.status.rest-3  order_id, value     expect rest-3, ORDER_STATUS_CANCELLED
//	  bar6.placed         order_id            expect mkt-2
//	bar 7: read back the partial close
//	  bar7.status         order_id, value     expect mkt-2, ORDER_STATUS_FILLED
//	  bar7.position       (as bar4.position)  expect quantity 1, total_out_quantity 1
//	  bar7.positions      count, symbols      expect 1, the symbol
//	  bar7.account        (as bar4.account)
//	bar 8 and later: only the counter; no reports.
//
// Bracket mode ("mode": "bracket", "takeProfit": P, "stopLoss": Q): see bracket().
//
// Trap mode ("mode": "trap"), on every bar N:
//
//	N % 3 == 0: cancel_order("no-such-order"); the host answers an unknown id
//	            with an error, which traps the call, so nothing is logged.
//	            If the call returns instead, it reports trap.survived.
//	otherwise:  alive               expect bars 1, 2, 4, 5, 7, ...
//
// Host functions used: place_order, get_positions, get_position,
// get_account_info, get_open_orders, cancel_order, cancel_all_orders,
// get_order_status, get_range, read_last_data, get_cache, set_cache, log.
package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knqyf263/go-plugin/types/known/emptypb"
	"github.com/knqyf263/go-plugin/types/known/timestamppb"

	"github.com/kubetrade/kubetrade/strategies/sdk"
	"github.com/kubetrade/kubetrade/strategies/sdk/strategy"
)

func main() {}

func init() {
	strategy.RegisterTradingStrategy(&hostCheck{
		Info: sdk.Info{
			StrategyName: "hostcheck",
			Identifier:   "io.kubetrade.examples.hostcheck",
			Description: "Test strategy: exercises the host functions in a fixed script " +
				"and logs what it saw, for checking a host implementation.",
			ConfigSchema: configSchema,
		},
		api: strategy.NewStrategyApi(),
	})
}

const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "hostcheck config",
  "type": "object",
  "additionalProperties": false,
  "required": ["symbol"],
  "properties": {
    "symbol": {"type": "string", "minLength": 1, "description": "The one symbol to trade."},
    "mode": {
      "enum": ["", "script", "trap", "bracket"], "default": "script",
      "description": "script: the scripted host-function check; trap: trap every 3rd bar."
    }
  }
}`

type config struct {
	Symbol string `json:"symbol"`
	Mode   string `json:"mode"`
	// Bracket mode: exit prices of the take-profit and stop-loss (0: leave out).
	TakeProfit float64 `json:"takeProfit"`
	StopLoss   float64 `json:"stopLoss"`
}

type hostCheck struct {
	sdk.Info
	api strategy.StrategyApi
	cfg config
}

func (h *hostCheck) Initialize(
	_ context.Context, req *strategy.InitializeRequest,
) (*emptypb.Empty, error) {
	var cfg config
	if err := sdk.ParseConfig(req.GetConfig(), &cfg); err != nil {
		return nil, err
	}
	if cfg.Symbol == "" {
		return nil, errors.New("invalid config: symbol is required")
	}
	if cfg.Mode != "" && cfg.Mode != "script" && cfg.Mode != "trap" && cfg.Mode != "bracket" {
		return nil, fmt.Errorf(
			"invalid config: mode must be script, trap or bracket, got %q", cfg.Mode)
	}
	h.cfg = cfg
	return &emptypb.Empty{}, nil
}

func (h *hostCheck) ProcessData(
	ctx context.Context, req *strategy.ProcessDataRequest,
) (*emptypb.Empty, error) {
	bar := req.GetData()
	if bar.GetSymbol() != h.cfg.Symbol {
		return &emptypb.Empty{}, nil
	}
	n, err := h.nextBar(ctx)
	if err != nil {
		return nil, err
	}
	r := &run{h: h, ctx: ctx, bar: bar, n: n}
	switch h.cfg.Mode {
	case "trap":
		r.trap()
	case "bracket":
		r.bracket()
	default:
		r.script()
	}
	if r.err != nil {
		return nil, r.err
	}
	return &emptypb.Empty{}, nil
}

// nextBar advances the counter in the host cache.
func (h *hostCheck) nextBar(ctx context.Context) (int, error) {
	got, err := h.api.GetCache(ctx, &strategy.GetRequest{Key: "bar"})
	if err != nil {
		return 0, err
	}
	n := 1
	if got.GetValue() != "" {
		prev, err := strconv.Atoi(got.GetValue())
		if err != nil {
			return 0, fmt.Errorf("cache key bar holds %q, not a number", got.GetValue())
		}
		n = prev + 1
	}
	_, err = h.api.SetCache(ctx, &strategy.SetRequest{Key: "bar", Value: strconv.Itoa(n)})
	return n, err
}

// run is one ProcessData call. Its helpers stop at the first error, which
// ProcessData returns, so each step reads as a straight list of calls.
type run struct {
	h   *hostCheck
	ctx context.Context
	bar *strategy.MarketData
	n   int
	err error
}

// bracket buys 2 on bar 1 with the configured take-profit and stop-loss, then
// reports its position and open orders on every bar as barN.position and
// barN.open (the exits appear as open orders once the entry has filled).
func (r *run) bracket() {
	if r.n == 1 {
		order := sdk.MarketOrder(r.h.cfg.Symbol, sdk.Buy, 2, r.bar.GetClose(), "bracketed entry")
		exit := strategy.PurchaseType_PURCHASE_TYPE_SELL
		if r.h.cfg.TakeProfit != 0 {
			order.TakeProfit = &strategy.ExecuteOrderTakeProfitOrStopLoss{
				Symbol: r.h.cfg.Symbol, Side: exit,
				OrderType: strategy.OrderType_ORDER_TYPE_LIMIT, Price: r.h.cfg.TakeProfit,
			}
		}
		if r.h.cfg.StopLoss != 0 {
			order.StopLoss = &strategy.ExecuteOrderTakeProfitOrStopLoss{
				Symbol: r.h.cfg.Symbol, Side: exit,
				OrderType: strategy.OrderType_ORDER_TYPE_MARKET, Price: r.h.cfg.StopLoss,
			}
		}
		r.place("entry", order)
		return
	}
	r.checkPosition(fmt.Sprintf("bar%d", r.n))
	r.checkOpenOrders(fmt.Sprintf("bar%d.open", r.n))
}

func (r *run) trap() {
	if r.n%3 == 0 {
		r.cancel("no-such-order")
		r.check("trap.survived")
		return
	}
	r.check("alive")
}

func (r *run) script() {
	price := r.bar.GetClose()
	switch r.n {
	case 1:
		r.place("rest-1", sdk.LimitOrder(r.h.cfg.Symbol, sdk.Buy, 1, price*0.5, "resting order"))
		r.checkOpenOrders("bar1.open_orders")
	case 2:
		// Remembered for bar 4's get_range, which starts at this bar.
		r.setCache("range.start", formatTime(r.bar.GetTime()))
		r.checkStatus("bar2.status", "rest-1")
		r.cancel("rest-1")
		r.check("bar2.cancel", "order_id", "rest-1", "open_orders", strconv.Itoa(len(r.openIDs())))
	case 3:
		r.checkStatus("bar3.status", "rest-1")
		r.place("mkt-1", sdk.MarketOrder(r.h.cfg.Symbol, sdk.Buy, 2, price, "open a position"))
		r.check("bar3.placed", "order_id", "mkt-1")
	case 4:
		r.checkStatus("bar4.status", "mkt-1")
		r.checkPosition("bar4")
		r.checkAccount("bar4.account")
		r.checkLastData("bar4.last")
		r.checkRange("bar4.range")
	case 5:
		r.place("rest-2", sdk.LimitOrder(r.h.cfg.Symbol, sdk.Buy, 1, price*0.5, "resting order"))
		r.place("rest-3", sdk.LimitOrder(r.h.cfg.Symbol, sdk.Buy, 1, price*0.4, "resting order"))
		r.checkOpenOrders("bar5.open_orders")
		r.call(func() error {
			_, err := r.h.api.CancelAllOrders(r.ctx, &emptypb.Empty{})
			return err
		})
		r.check("bar5.cancel_all", "open_orders", strconv.Itoa(len(r.openIDs())))
	case 6:
		r.checkOpenOrders("bar6.open_orders")
		r.checkStatus("bar6.status.rest-2", "rest-2")
		r.checkStatus("bar6.status.rest-3", "rest-3")
		r.place("mkt-2", sdk.MarketOrder(r.h.cfg.Symbol, sdk.Sell, 1, price, "reduce the position"))
		r.check("bar6.placed", "order_id", "mkt-2")
	case 7:
		r.checkStatus("bar7.status", "mkt-2")
		r.checkPosition("bar7")
		r.checkAccount("bar7.account")
	}
}

// call runs one host call unless an earlier one failed.
func (r *run) call(f func() error) {
	if r.err == nil {
		r.err = f()
	}
}

func (r *run) check(step string, kv ...string) {
	r.call(func() error {
		fields := append([]string{"step", step, "bar", strconv.Itoa(r.n)}, kv...)
		return sdk.Log(r.ctx, r.h.api, sdk.LevelInfo, "check", fields...)
	})
}

func (r *run) setCache(key, value string) {
	r.call(func() error {
		_, err := r.h.api.SetCache(r.ctx, &strategy.SetRequest{Key: key, Value: value})
		return err
	})
}

func (r *run) place(id string, order *strategy.ExecuteOrder) {
	order.Id = id
	order.StrategyName = r.h.StrategyName
	r.call(func() error {
		_, err := r.h.api.PlaceOrder(r.ctx, order)
		return err
	})
}

func (r *run) cancel(id string) {
	r.call(func() error {
		_, err := r.h.api.CancelOrder(r.ctx, &strategy.CancelOrderRequest{OrderId: id})
		return err
	})
}

func (r *run) openIDs() []string {
	var ids []string
	r.call(func() error {
		open, err := r.h.api.GetOpenOrders(r.ctx, &emptypb.Empty{})
		for _, o := range open.GetOrders() {
			ids = append(ids, o.GetId())
		}
		slices.Sort(ids)
		return err
	})
	return ids
}

func (r *run) checkOpenOrders(step string) {
	ids := r.openIDs()
	r.check(step, "count", strconv.Itoa(len(ids)), "ids", strings.Join(ids, ","))
}

func (r *run) checkStatus(step, id string) {
	var status strategy.OrderStatus
	r.call(func() error {
		got, err := r.h.api.GetOrderStatus(r.ctx, &strategy.GetOrderStatusRequest{OrderId: id})
		status = got.GetStatus()
		return err
	})
	r.check(step, "order_id", id, "value", strategy.OrderStatus_name[int32(status)])
}

// checkPosition reports get_position(symbol) and get_positions as
// <prefix>.position and <prefix>.positions.
func (r *run) checkPosition(prefix string) {
	var pos *strategy.Position
	r.call(func() error {
		var err error
		pos, err = r.h.api.GetPosition(r.ctx, &strategy.GetPositionRequest{Symbol: r.h.cfg.Symbol})
		return err
	})
	r.check(prefix+".position",
		"symbol", pos.GetSymbol(),
		"quantity", sdk.Float(pos.GetQuantity()),
		"total_in_quantity", sdk.Float(pos.GetTotalInQuantity()),
		"total_out_quantity", sdk.Float(pos.GetTotalOutQuantity()),
		"total_in_amount", sdk.Float(pos.GetTotalInAmount()),
		"total_out_amount", sdk.Float(pos.GetTotalOutAmount()),
		"total_in_fee", sdk.Float(pos.GetTotalInFee()),
		"total_out_fee", sdk.Float(pos.GetTotalOutFee()),
	)
	var symbols []string
	r.call(func() error {
		all, err := r.h.api.GetPositions(r.ctx, &emptypb.Empty{})
		for _, p := range all.GetPositions() {
			symbols = append(symbols, p.GetSymbol())
		}
		slices.Sort(symbols)
		return err
	})
	r.check(prefix+".positions",
		"count", strconv.Itoa(len(symbols)), "symbols", strings.Join(symbols, ","))
}

func (r *run) checkAccount(step string) {
	var acct *strategy.AccountInfo
	r.call(func() error {
		var err error
		acct, err = r.h.api.GetAccountInfo(r.ctx, &emptypb.Empty{})
		return err
	})
	r.check(step,
		"balance", sdk.Float(acct.GetBalance()),
		"equity", sdk.Float(acct.GetEquity()),
		"buying_power", sdk.Float(acct.GetBuyingPower()),
		"realized_pnl", sdk.Float(acct.GetRealizedPnl()),
		"unrealized_pnl", sdk.Float(acct.GetUnrealizedPnl()),
		"total_fees", sdk.Float(acct.GetTotalFees()),
		"margin_used", sdk.Float(acct.GetMarginUsed()),
	)
}

func (r *run) checkLastData(step string) {
	var last *strategy.MarketData
	r.call(func() error {
		var err error
		last, err = r.h.api.ReadLastData(r.ctx, &strategy.ReadLastDataRequest{Symbol: r.h.cfg.Symbol})
		return err
	})
	r.check(step,
		"symbol", last.GetSymbol(), "time", formatTime(last.GetTime()),
		"close", sdk.Float(last.GetClose()))
}

// checkRange asks get_range for the bars from bar 2 to this bar.
func (r *run) checkRange(step string) {
	var start time.Time
	r.call(func() error {
		got, err := r.h.api.GetCache(r.ctx, &strategy.GetRequest{Key: "range.start"})
		if err != nil {
			return err
		}
		start, err = time.Parse(time.RFC3339Nano, got.GetValue())
		return err
	})
	var bars []*strategy.MarketData
	r.call(func() error {
		got, err := r.h.api.GetRange(r.ctx, &strategy.GetRangeRequest{
			Symbol:    r.h.cfg.Symbol,
			StartTime: sdk.Timestamp(start),
			EndTime:   r.bar.GetTime(),
		})
		bars = got.GetData()
		return err
	})
	first, last := "", ""
	if len(bars) > 0 {
		first, last = formatTime(bars[0].GetTime()), formatTime(bars[len(bars)-1].GetTime())
	}
	r.check(step,
		"start", start.Format(time.RFC3339Nano), "end", formatTime(r.bar.GetTime()),
		"count", strconv.Itoa(len(bars)), "first", first, "last", last)
}

func formatTime(ts *timestamppb.Timestamp) string {
	return sdk.Time(ts).Format(time.RFC3339Nano)
}
