//go:build wasip1

// Command apicheck is a test strategy that calls every host function of the
// StrategyApi service, reports what each answered through the `log` host
// function, and, in its "errors" mode, makes one failing host call per even bar so
// a test can check that each failure traps that call and nothing else. It
// complements examples/hostcheck (orders and positions): apicheck covers the
// market-data queries, the indicators, batches of orders, trades and markers.
//
// Config: {"symbol": "BTC"} runs the script below; {"symbol": ..., "mode":
// "errors"} runs the error cases instead. Bars of other symbols are ignored
// (the session may trade more symbols: the script reads them through
// execute_sql, count and read_last_data). The bar counter N (1-based) lives
// in the host cache under key "bar" and is written first in every call, so a
// call that traps later does not replay its bar.
//
// Every report is one `log` call at level INFO with message "check" and fields
// "step", "bar" (N) and the step's own fields. Numbers are shortest round-trip
// decimals, times RFC 3339 in UTC, enums their protobuf names, id lists
// comma-separated in the host's order.
//
// Script (mode "" or "script"); C(n) is the close of bar n:
//
//	bar 1  configure_indicator for the six indicators of `configured` (below);
//	       place_multiple_orders with two orders in one call: MARKET BUY 2 "multi-mkt"
//	       and LIMIT BUY 1 at C(1)/2 "multi-lmt" (rests); mark the bar; one `log`
//	       each at DEBUG, WARN and ERROR (message "level", field "level")
//	  bar1.configure        count
//	  bar1.open_orders      count, ids                (both orders, before they are sent)
//	bar 2  statuses; MARKET BUY 1 "buy-2"; a second mark
//	  bar2.status.<id>      order_id, value           for multi-mkt and multi-lmt
//	bar 3  MARKET SELL 2 "sell-1"; get_markers
//	  bar3.markers          count
//	  bar3.marker.<i>       color, shape, title, message, category, signal_type, level
//	bar 4  MARKET SELL 1 "sell-2" (flat again once it fills); cancel_order("multi-lmt")
//	  bar4.position         symbol, quantity, total_in_quantity, total_out_quantity
//	  bar4.cancel           order_id, open_orders     (ids of the orders still open after it)
//	bar 5  trades, the account, and Bollinger Bands while they warm up
//	  bar5.trades           count                     get_trades{}
//	  bar5.trade.<i>        order_id, symbol, side, quantity, price, fee, pnl,
//	                        cumulative_pnl, executed_at, strategy_name, reason, message
//	  bar5.trades.limit     count, ids                get_trades{limit: 1}
//	  bar5.trades.since     count, ids                get_trades{start_time: bar 3's time}
//	  bar5.trades.other     count                     get_trades{symbol: "ETH"}
//	  bar5.status.multi-lmt order_id, value
//	  bar5.positions        count, symbols
//	  bar5.account          balance, equity, buying_power, realized_pnl,
//	                        unrealized_pnl, total_fees, margin_used
//	  bar5.signal.bbands    (as below)                still warming up: argo-trading's answer
//	                                                  (NO_ACTION, null); the other indicators
//	                                                  fail the call meanwhile (errors mode)
//	bar 6  LIMIT BUY 1 at C(6)/2 "rest-a" and at C(6)/3 "rest-b", then cancel_all_orders
//	  bar6.open_orders      count, ids                before cancelling
//	  bar6.cancel_all       open_orders               after
//	bar 7  bar7.status.<id>  order_id, value           for rest-a and rest-b
//	bar 12 the market-data window (1m bars: this bar is minute 11 of the data)
//	  bar12.range.5m        count                     get_range(symbol, epoch, now, INTERVAL_5M)
//	  bar12.range.5m.<i>    symbol, time, open, high, low, close, volume
//	  bar12.range.5m_from3  count                     the same from bar 3's time
//	  bar12.range.5m_from3.<i>
//	  bar12.range.15m       count                     INTERVAL_15M from the epoch
//	  bar12.range.15m.<i>
//	  bar12.range.all       count, symbols            get_range("", now - 1m, now, INTERVAL_5M):
//	                                                  every symbol, in (time, symbol) order
//	  bar12.count           all, open, last5          count(epoch, now), count({}),
//	                                                  count(now - 4m, now): every symbol
//	  bar12.last.<symbol>   symbol, time, close       read_last_data for this symbol and "ETH"
//	  bar12.sql.<q>         rows                      execute_sql: the number of rows, and
//	  bar12.sql.<q>.<i>     (row i's columns)         each row's columns as fields, for
//	                        stats: n, h, l            `sqlStats` with [symbol]
//	                        avg: avg_close, volume, n `sqlAverage` with ["ETH", "2000"]
//	                        rows: time, close         `sqlRows` with [symbol]
//	bar 40 and bar 41: every configured indicator and Williams %R, never configured
//	  barN.signal.<name>    type, name, reason, raw, symbol, indicator, time
//	other bars: only the counter.
//
// Errors mode ("mode": "errors"): bar 1 and every odd bar after it log
//
//	alive                   last (read_last_data's time), big (length of cache key "big")
//
// and each even bar 2k makes the failing call errorCases[k-1] (below). The host
// must answer each with an error, which traps the call, so nothing more is
// logged on that bar; if the call returns instead, it logs "survived" with
// fields "case" and "error". Once the cases run out every bar logs alive.
//
// Host functions used: all 21 of the StrategyApi service.
package main

import (
	"context"
	"errors"
	"fmt"
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
	strategy.RegisterTradingStrategy(&apiCheck{
		Info: sdk.Info{
			StrategyName: "apicheck",
			Identifier:   "io.kubetrade.testdata.apicheck",
			Description: "Test strategy: calls every host function, reports the answers, " +
				"and makes failing host calls on demand.",
			ConfigSchema: configSchema,
		},
		api: strategy.NewStrategyApi(),
	})
}

const configSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "apicheck config",
  "type": "object",
  "additionalProperties": false,
  "required": ["symbol"],
  "properties": {
    "symbol": {"type": "string", "minLength": 1, "description": "The one symbol to check."},
    "mode": {
      "enum": ["", "script", "errors"], "default": "script",
      "description": "script: report what every host function answers; errors: one failing call per even bar."
    }
  }
}`

// The queries of bar 12. Parameters are bound by the host, never spliced in.
const (
	sqlStats   = `SELECT count(*) AS n, max(high) AS h, min(low) AS l FROM market_data WHERE symbol = ?`
	sqlAverage = `SELECT avg(close) AS avg_close, sum(volume) AS volume, count(*) AS n ` +
		`FROM market_data WHERE symbol = ? AND close > ?`
	sqlRows = `SELECT time, close FROM market_data WHERE symbol = $1 ORDER BY time DESC LIMIT 2`
)

// indicator is one configure_indicator/get_signal subject of the script.
type indicator struct {
	name   string // the step suffix: barN.signal.<name>
	kind   strategy.IndicatorType
	config string // "" means never configured: the host's defaults apply
}

// configured are set up on bar 1 (periods written both as 14 and as 14.0, as
// Go strategies send float64s) and read on bars 40 and 41 (Bollinger Bands on bar 5 too).
var configured = []indicator{
	{"rsi", strategy.IndicatorType_INDICATOR_RSI, "[14.0, 30, 70]"},
	{"ma", strategy.IndicatorType_INDICATOR_MA, "[10]"},
	{"ema", strategy.IndicatorType_INDICATOR_EMA, "[10.0]"},
	{"macd", strategy.IndicatorType_INDICATOR_MACD, "[12, 26, 9]"},
	{"bbands", strategy.IndicatorType_INDICATOR_BOLLINGER_BANDS, `[20, 2.0, "24h"]`},
	{"atr", strategy.IndicatorType_INDICATOR_ATR, "[14]"},
}

// unconfigured is read on bars 40 and 41 without ever being configured.
var unconfigured = indicator{"wr", strategy.IndicatorType_INDICATOR_WILLIAMS_R, ""}

// bands is the one indicator that answers while it warms up (bar 5).
var bands = []indicator{configured[4]}

// errorCase is one host call that a correct host refuses.
type errorCase struct {
	name string
	call func(r *run) error
}

// errorCases run one per even bar in errors mode; the test names them in the same order.
var errorCases = []errorCase{
	// get_signal while the indicator lacks history (RSI needs 15 bars; this is bar 2).
	{"signal.warming_up", func(r *run) error {
		return r.signal(strategy.IndicatorType_INDICATOR_RSI, r.bar)
	}},
	// execute_sql: market_data is read-only, and bad SQL is reported, not ignored.
	{"sql.delete", func(r *run) error {
		return r.sql("DELETE FROM market_data WHERE symbol = ?", r.h.cfg.Symbol)
	}},
	{"sql.syntax", func(r *run) error { return r.sql("SELEC count(*) FROM market_data") }},
	{"sql.unknown_column", func(r *run) error { return r.sql("SELECT nope FROM market_data") }},
	{"sql.two_statements", func(r *run) error { return r.sql("SELECT 1; SELECT 2") }},
	// configure_indicator: unknown type, malformed JSON, bad period, declared but not implemented.
	{"configure.unknown_type", func(r *run) error { return r.configure(99, "[14]") }},
	{"configure.bad_json", func(r *run) error {
		return r.configure(strategy.IndicatorType_INDICATOR_RSI, "[14,")
	}},
	{"configure.bad_period", func(r *run) error {
		return r.configure(strategy.IndicatorType_INDICATOR_RSI, "[0]")
	}},
	{"configure.unsupported", func(r *run) error {
		return r.configure(strategy.IndicatorType_INDICATOR_TREND_STRENGTH, "[]")
	}},
	// get_signal: an indicator the host has no formula for, an unknown one, an unknown symbol.
	{"signal.unsupported", func(r *run) error {
		return r.signal(strategy.IndicatorType_INDICATOR_TREND_STRENGTH, r.bar)
	}},
	{"signal.unknown_type", func(r *run) error { return r.signal(99, r.bar) }},
	{"signal.unknown_symbol", func(r *run) error {
		bar := &strategy.MarketData{Symbol: "NOPE", Close: r.bar.GetClose(), Time: r.bar.GetTime()}
		return r.signal(strategy.IndicatorType_INDICATOR_RSI, bar)
	}},
	// read_last_data of a symbol with no bars.
	{"last.unknown_symbol", func(r *run) error {
		_, err := r.h.api.ReadLastData(r.ctx, &strategy.ReadLastDataRequest{Symbol: "NOPE"})
		return err
	}},
	// Order ids the host never saw.
	{"status.unknown_id", func(r *run) error {
		_, err := r.h.api.GetOrderStatus(r.ctx, &strategy.GetOrderStatusRequest{OrderId: "no-such-order"})
		return err
	}},
	{"cancel.unknown_id", func(r *run) error {
		_, err := r.h.api.CancelOrder(r.ctx, &strategy.CancelOrderRequest{OrderId: "no-such-order"})
		return err
	}},
	// set_cache: one byte over the host's 1 MiB per-value limit.
	{"cache.too_big", func(r *run) error {
		value := strings.Repeat("x", 1<<20+1)
		_, err := r.h.api.SetCache(r.ctx, &strategy.SetRequest{Key: "big", Value: value})
		return err
	}},
	// Enum values this ABI version does not define.
	{"order.bad_side", func(r *run) error {
		order := sdk.MarketOrder(r.h.cfg.Symbol, strategy.PurchaseType(7), 1, r.bar.GetClose(), "bad side")
		_, err := r.h.api.PlaceOrder(r.ctx, order)
		return err
	}},
	{"order.bad_type", func(r *run) error {
		order := sdk.MarketOrder(r.h.cfg.Symbol, sdk.Buy, 1, r.bar.GetClose(), "bad type")
		order.OrderType = strategy.OrderType(9)
		_, err := r.h.api.PlaceOrder(r.ctx, order)
		return err
	}},
	{"multi.bad_second", func(r *run) error {
		good := sdk.LimitOrder(r.h.cfg.Symbol, sdk.Buy, 1, r.bar.GetClose()/2, "valid first")
		good.Id = "multi-good"
		bad := sdk.MarketOrder(r.h.cfg.Symbol, strategy.PurchaseType(7), 1, r.bar.GetClose(), "bad side")
		_, err := r.h.api.PlaceMultipleOrders(r.ctx,
			&strategy.PlaceMultipleOrdersRequest{Orders: []*strategy.ExecuteOrder{good, bad}})
		return err
	}},
	// mark with a shape this ABI version does not define.
	{"mark.bad_shape", func(r *run) error {
		_, err := r.h.api.Mark(r.ctx, &strategy.MarkRequest{
			MarketData: r.bar, Mark: &strategy.Mark{Shape: strategy.MarkShape(99), Title: "bad"},
		})
		return err
	}},
	// get_range with an interval the ABI does not define.
	{"range.bad_interval", func(r *run) error {
		_, err := r.h.api.GetRange(r.ctx, &strategy.GetRangeRequest{
			Symbol: r.h.cfg.Symbol, StartTime: sdk.Timestamp(sdk.Epoch),
			EndTime: r.bar.GetTime(), Interval: strategy.Interval(42),
		})
		return err
	}},
}

type config struct {
	Symbol string `json:"symbol"`
	Mode   string `json:"mode"`
}

type apiCheck struct {
	sdk.Info
	api strategy.StrategyApi
	cfg config
}

func (h *apiCheck) Initialize(
	_ context.Context, req *strategy.InitializeRequest,
) (*emptypb.Empty, error) {
	var cfg config
	if err := sdk.ParseConfig(req.GetConfig(), &cfg); err != nil {
		return nil, err
	}
	if cfg.Symbol == "" {
		return nil, errors.New("invalid config: symbol is required")
	}
	if cfg.Mode != "" && cfg.Mode != "script" && cfg.Mode != "errors" {
		return nil, fmt.Errorf("invalid config: mode must be script or errors, got %q", cfg.Mode)
	}
	h.cfg = cfg
	return &emptypb.Empty{}, nil
}

func (h *apiCheck) ProcessData(
	ctx context.Context, req *strategy.ProcessDataRequest,
) (*emptypb.Empty, error) {
	bar := req.GetData()
	if bar.GetSymbol() != h.cfg.Symbol {
		return &emptypb.Empty{}, nil
	}
	r := &run{h: h, ctx: ctx, bar: bar}
	r.n = r.nextBar()
	if h.cfg.Mode == "errors" {
		r.errorMode()
	} else {
		r.script()
	}
	if r.err != nil {
		return nil, r.err
	}
	return &emptypb.Empty{}, nil
}

// run is one ProcessData call. Its helpers stop at the first error, which
// ProcessData returns, so each step reads as a straight list of calls.
type run struct {
	h   *apiCheck
	ctx context.Context
	bar *strategy.MarketData
	n   int
	err error
}

// call runs one host call unless an earlier one failed.
func (r *run) call(f func() error) {
	if r.err == nil {
		r.err = f()
	}
}

// nextBar advances the counter in the host cache (get_cache, set_cache).
func (r *run) nextBar() int {
	n := 1
	r.call(func() error {
		got, err := r.h.api.GetCache(r.ctx, &strategy.GetRequest{Key: "bar"})
		if err != nil || got.GetValue() == "" {
			return err
		}
		prev, err := strconv.Atoi(got.GetValue())
		if err != nil {
			return fmt.Errorf("cache key bar holds %q, not a number", got.GetValue())
		}
		n = prev + 1
		return nil
	})
	r.call(func() error {
		_, err := r.h.api.SetCache(r.ctx, &strategy.SetRequest{Key: "bar", Value: strconv.Itoa(n)})
		return err
	})
	return n
}

func (r *run) check(step string, kv ...string) {
	r.logAt(sdk.LevelInfo, "check", append([]string{"step", step}, kv...)...)
}

func (r *run) logAt(level strategy.LogLevel, message string, kv ...string) {
	r.call(func() error {
		fields := append([]string{"bar", strconv.Itoa(r.n)}, kv...)
		return sdk.Log(r.ctx, r.h.api, level, message, fields...)
	})
}

// step names a report of this bar: bar<N>.<what>.
func (r *run) step(what string) string {
	return fmt.Sprintf("bar%d.%s", r.n, what)
}

// -- the script -----------------------------------------------------------------------------

func (r *run) script() {
	symbol, price := r.h.cfg.Symbol, r.bar.GetClose()
	switch r.n {
	case 1:
		for _, ind := range configured {
			r.call(func() error { return r.configure(ind.kind, ind.config) })
		}
		r.check(r.step("configure"), "count", strconv.Itoa(len(configured)))
		// Two orders of different types in one call; the limit rests far below the market.
		mkt := r.order("multi-mkt", sdk.MarketOrder(symbol, sdk.Buy, 2, price, "batch market"))
		lmt := r.order("multi-lmt", sdk.LimitOrder(symbol, sdk.Buy, 1, price/2, "batch limit"))
		r.call(func() error {
			_, err := r.h.api.PlaceMultipleOrders(r.ctx, &strategy.PlaceMultipleOrdersRequest{
				Orders: []*strategy.ExecuteOrder{mkt, lmt},
			})
			return err
		})
		r.checkOpenOrders(r.step("open_orders"))
		r.mark(&strategy.Mark{
			Color: "green", Shape: strategy.MarkShape_MARK_SHAPE_TRIANGLE, Title: "entry",
			Message: "bought 2", Category: "trade",
			SignalType: strategy.SignalType_SIGNAL_TYPE_BUY_LONG,
			Level:      strategy.MarkLevel_MARK_LEVEL_INFO,
		})
		r.logAt(sdk.LevelDebug, "level", "level", "debug")
		r.logAt(sdk.LevelWarn, "level", "level", "warn")
		r.logAt(sdk.LevelError, "level", "level", "error")
	case 2:
		r.checkStatus("multi-mkt")
		r.checkStatus("multi-lmt")
		r.place(r.order("buy-2", sdk.MarketOrder(symbol, sdk.Buy, 1, price, "add one")))
		r.mark(&strategy.Mark{
			Color: "#FF8800", Shape: strategy.MarkShape_MARK_SHAPE_SQUARE, Title: "add",
			Category:   "trade",
			SignalType: strategy.SignalType_SIGNAL_TYPE_NO_ACTION,
			Level:      strategy.MarkLevel_MARK_LEVEL_WARNING,
		})
	case 3:
		r.place(r.order("sell-1", sdk.MarketOrder(symbol, sdk.Sell, 2, price, "take two off")))
		r.checkMarkers()
	case 4:
		r.place(r.order("sell-2", sdk.MarketOrder(symbol, sdk.Sell, 1, price, "close")))
		r.checkPosition()
		r.call(func() error {
			_, err := r.h.api.CancelOrder(r.ctx, &strategy.CancelOrderRequest{OrderId: "multi-lmt"})
			return err
		})
		r.check(r.step("cancel"), "order_id", "multi-lmt",
			"open_orders", strings.Join(r.openIDs(), ","))
	case 5:
		r.checkTrades()
		r.checkStatus("multi-lmt")
		r.checkPositions()
		r.checkAccount()
		r.checkSignals(bands)
	case 6:
		r.place(r.order("rest-a", sdk.LimitOrder(symbol, sdk.Buy, 1, price/2, "resting")))
		r.place(r.order("rest-b", sdk.LimitOrder(symbol, sdk.Buy, 1, price/3, "resting")))
		r.checkOpenOrders(r.step("open_orders"))
		r.call(func() error {
			_, err := r.h.api.CancelAllOrders(r.ctx, &emptypb.Empty{})
			return err
		})
		r.check(r.step("cancel_all"), "open_orders", strconv.Itoa(len(r.openIDs())))
	case 7:
		r.checkStatus("rest-a")
		r.checkStatus("rest-b")
	case 12:
		now := sdk.Time(r.bar.GetTime())
		r.checkRange("range.5m", symbol, sdk.Epoch, now, strategy.Interval_INTERVAL_5M)
		r.checkRange("range.5m_from3", symbol, now.Add(-9*time.Minute), now,
			strategy.Interval_INTERVAL_5M)
		r.checkRange("range.15m", symbol, sdk.Epoch, now, strategy.Interval_INTERVAL_15M)
		r.checkRangeAll(now.Add(-time.Minute), now)
		r.checkCount(now)
		r.checkLast(symbol)
		r.checkLast("ETH")
		r.checkSQL()
	case 40, 41:
		r.checkSignals(append(append([]indicator{}, configured...), unconfigured))
	}
}

// order fills in the id and the strategy name of an order built by the sdk.
func (r *run) order(id string, o *strategy.ExecuteOrder) *strategy.ExecuteOrder {
	o.Id = id
	o.StrategyName = r.h.StrategyName
	return o
}

func (r *run) place(o *strategy.ExecuteOrder) {
	r.call(func() error {
		_, err := r.h.api.PlaceOrder(r.ctx, o)
		return err
	})
}

func (r *run) mark(m *strategy.Mark) {
	r.call(func() error {
		_, err := r.h.api.Mark(r.ctx, &strategy.MarkRequest{MarketData: r.bar, Mark: m})
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
		return err
	})
	return ids
}

func (r *run) checkOpenOrders(step string) {
	ids := r.openIDs()
	r.check(step, "count", strconv.Itoa(len(ids)), "ids", strings.Join(ids, ","))
}

func (r *run) checkStatus(id string) {
	var status strategy.OrderStatus
	r.call(func() error {
		got, err := r.h.api.GetOrderStatus(r.ctx, &strategy.GetOrderStatusRequest{OrderId: id})
		status = got.GetStatus()
		return err
	})
	r.check(r.step("status."+id), "order_id", id, "value", name(strategy.OrderStatus_name, int32(status)))
}

// checkMarkers reports get_markers: every mark so far, oldest first.
func (r *run) checkMarkers() {
	var marks []*strategy.Mark
	r.call(func() error {
		got, err := r.h.api.GetMarkers(r.ctx, &emptypb.Empty{})
		marks = got.GetMarkers()
		return err
	})
	r.check(r.step("markers"), "count", strconv.Itoa(len(marks)))
	for i, m := range marks {
		r.check(r.step(fmt.Sprintf("marker.%d", i)),
			"color", m.GetColor(), "shape", name(strategy.MarkShape_name, int32(m.GetShape())), "title", m.GetTitle(),
			"message", m.GetMessage(), "category", m.GetCategory(),
			"signal_type", name(strategy.SignalType_name, int32(m.GetSignalType())),
			"level", name(strategy.MarkLevel_name, int32(m.GetLevel())))
	}
}

func (r *run) checkPosition() {
	var pos *strategy.Position
	r.call(func() error {
		var err error
		pos, err = r.h.api.GetPosition(r.ctx, &strategy.GetPositionRequest{Symbol: r.h.cfg.Symbol})
		return err
	})
	r.check(r.step("position"),
		"symbol", pos.GetSymbol(),
		"quantity", sdk.Float(pos.GetQuantity()),
		"total_in_quantity", sdk.Float(pos.GetTotalInQuantity()),
		"total_out_quantity", sdk.Float(pos.GetTotalOutQuantity()))
}

func (r *run) checkPositions() {
	var symbols []string
	r.call(func() error {
		all, err := r.h.api.GetPositions(r.ctx, &emptypb.Empty{})
		for _, p := range all.GetPositions() {
			symbols = append(symbols, p.GetSymbol())
		}
		return err
	})
	r.check(r.step("positions"),
		"count", strconv.Itoa(len(symbols)), "symbols", strings.Join(symbols, ","))
}

func (r *run) checkAccount() {
	var acct *strategy.AccountInfo
	r.call(func() error {
		var err error
		acct, err = r.h.api.GetAccountInfo(r.ctx, &emptypb.Empty{})
		return err
	})
	r.check(r.step("account"),
		"balance", sdk.Float(acct.GetBalance()),
		"equity", sdk.Float(acct.GetEquity()),
		"buying_power", sdk.Float(acct.GetBuyingPower()),
		"realized_pnl", sdk.Float(acct.GetRealizedPnl()),
		"unrealized_pnl", sdk.Float(acct.GetUnrealizedPnl()),
		"total_fees", sdk.Float(acct.GetTotalFees()),
		"margin_used", sdk.Float(acct.GetMarginUsed()))
}

// trades asks get_trades with the given filters.
func (r *run) trades(req *strategy.GetTradesRequest) []*strategy.TradeRecord {
	var trades []*strategy.TradeRecord
	r.call(func() error {
		got, err := r.h.api.GetTrades(r.ctx, req)
		trades = got.GetTrades()
		return err
	})
	return trades
}

func tradeIDs(trades []*strategy.TradeRecord) string {
	ids := make([]string, len(trades))
	for i, t := range trades {
		ids[i] = t.GetOrderId()
	}
	return strings.Join(ids, ",")
}

// checkTrades reports every trade in full, then the answers of three filters.
func (r *run) checkTrades() {
	all := r.trades(&strategy.GetTradesRequest{})
	r.check(r.step("trades"), "count", strconv.Itoa(len(all)))
	for i, t := range all {
		r.check(r.step(fmt.Sprintf("trade.%d", i)),
			"order_id", t.GetOrderId(), "symbol", t.GetSymbol(), "side", name(strategy.PurchaseType_name, int32(t.GetSide())),
			"quantity", sdk.Float(t.GetQuantity()), "price", sdk.Float(t.GetPrice()),
			"fee", sdk.Float(t.GetFee()), "pnl", sdk.Float(t.GetPnl()),
			"cumulative_pnl", sdk.Float(t.GetCumulativePnl()),
			"executed_at", formatTime(t.GetExecutedAt()),
			"strategy_name", t.GetStrategyName(),
			"reason", t.GetReason().GetReason(), "message", t.GetReason().GetMessage())
	}
	last := r.trades(&strategy.GetTradesRequest{Limit: 1})
	r.check(r.step("trades.limit"), "count", strconv.Itoa(len(last)), "ids", tradeIDs(last))
	since := sdk.Time(r.bar.GetTime()).Add(-2 * time.Minute) // bar 3's time
	recent := r.trades(&strategy.GetTradesRequest{StartTime: sdk.Timestamp(since)})
	r.check(r.step("trades.since"), "count", strconv.Itoa(len(recent)), "ids", tradeIDs(recent))
	other := r.trades(&strategy.GetTradesRequest{Symbol: "ETH"})
	r.check(r.step("trades.other"), "count", strconv.Itoa(len(other)))
}

// checkSignals reports get_signal for each indicator at this bar.
func (r *run) checkSignals(list []indicator) {
	for _, ind := range list {
		var got *strategy.GetSignalResponse
		r.call(func() error {
			var err error
			got, err = r.h.api.GetSignal(r.ctx,
				&strategy.GetSignalRequest{IndicatorType: ind.kind, MarketData: r.bar})
			return err
		})
		r.check(r.step("signal."+ind.name),
			"type", name(strategy.SignalType_name, int32(got.GetType())), "name", got.GetName(), "reason", got.GetReason(),
			"raw", got.GetRawValue(), "symbol", got.GetSymbol(),
			"indicator", name(strategy.IndicatorType_name, int32(got.GetIndicatorType())),
			"time", formatTime(got.GetTimestamp()))
	}
}

// checkRange reports get_range(symbol, start, end, interval) bar by bar.
func (r *run) checkRange(what, symbol string, start, end time.Time, interval strategy.Interval) {
	var bars []*strategy.MarketData
	r.call(func() error {
		got, err := r.h.api.GetRange(r.ctx, &strategy.GetRangeRequest{
			Symbol: symbol, StartTime: sdk.Timestamp(start), EndTime: sdk.Timestamp(end),
			Interval: interval,
		})
		bars = got.GetData()
		return err
	})
	r.check(r.step(what), "count", strconv.Itoa(len(bars)))
	for i, b := range bars {
		r.check(r.step(fmt.Sprintf("%s.%d", what, i)),
			"symbol", b.GetSymbol(), "time", formatTime(b.GetTime()),
			"open", sdk.Float(b.GetOpen()), "high", sdk.Float(b.GetHigh()),
			"low", sdk.Float(b.GetLow()), "close", sdk.Float(b.GetClose()),
			"volume", sdk.Float(b.GetVolume()))
	}
}

// checkRangeAll asks get_range without a symbol: every symbol's buckets.
func (r *run) checkRangeAll(start, end time.Time) {
	var bars []*strategy.MarketData
	r.call(func() error {
		got, err := r.h.api.GetRange(r.ctx, &strategy.GetRangeRequest{
			StartTime: sdk.Timestamp(start), EndTime: sdk.Timestamp(end),
			Interval: strategy.Interval_INTERVAL_5M,
		})
		bars = got.GetData()
		return err
	})
	symbols := make([]string, len(bars))
	for i, b := range bars {
		symbols[i] = b.GetSymbol() + "@" + formatTime(b.GetTime())
	}
	r.check(r.step("range.all"), "count", strconv.Itoa(len(bars)),
		"symbols", strings.Join(symbols, ","))
}

func (r *run) count(req *strategy.CountRequest) string {
	var n int32
	r.call(func() error {
		got, err := r.h.api.Count(r.ctx, req)
		n = got.GetCount()
		return err
	})
	return strconv.Itoa(int(n))
}

func (r *run) checkCount(now time.Time) {
	all := r.count(&strategy.CountRequest{
		StartTime: sdk.Timestamp(sdk.Epoch), EndTime: sdk.Timestamp(now),
	})
	open := r.count(&strategy.CountRequest{})
	last5 := r.count(&strategy.CountRequest{
		StartTime: sdk.Timestamp(now.Add(-4 * time.Minute)), EndTime: sdk.Timestamp(now),
	})
	r.check(r.step("count"), "all", all, "open", open, "last5", last5)
}

func (r *run) checkLast(symbol string) {
	var last *strategy.MarketData
	r.call(func() error {
		var err error
		last, err = r.h.api.ReadLastData(r.ctx, &strategy.ReadLastDataRequest{Symbol: symbol})
		return err
	})
	r.check(r.step("last."+symbol),
		"symbol", last.GetSymbol(), "time", formatTime(last.GetTime()),
		"close", sdk.Float(last.GetClose()))
}

// checkQuery reports execute_sql(q, params) as barN.sql.<what> (the row count) and
// barN.sql.<what>.<i> (row i's columns as fields, the host's text for each value).
func (r *run) checkQuery(what, q string, params ...string) {
	var rows []*strategy.SQLResult
	r.call(func() error {
		got, err := r.h.api.ExecuteSQL(r.ctx, &strategy.ExecuteSQLRequest{Query: q, Params: params})
		rows = got.GetResults()
		return err
	})
	r.check(r.step("sql."+what), "rows", strconv.Itoa(len(rows)))
	for i, row := range rows {
		kv := make([]string, 0, 2*len(row.GetFields()))
		for k, v := range row.GetFields() {
			kv = append(kv, k, v)
		}
		r.check(r.step(fmt.Sprintf("sql.%s.%d", what, i)), kv...)
	}
}

func (r *run) checkSQL() {
	r.checkQuery("stats", sqlStats, r.h.cfg.Symbol)
	r.checkQuery("avg", sqlAverage, "ETH", "2000")
	r.checkQuery("rows", sqlRows, r.h.cfg.Symbol)
}

// -- the error cases ------------------------------------------------------------------------

func (r *run) errorMode() {
	k := r.n/2 - 1
	if r.n%2 == 1 || k >= len(errorCases) {
		r.alive()
		return
	}
	c := errorCases[k]
	err := c.call(r)
	// Only reached when the host did not trap.
	text := ""
	if err != nil {
		text = err.Error()
	}
	r.check("survived", "case", c.name, "error", text)
}

// alive shows the instance still works after a trapped call, and what the
// failed set_cache left behind (nothing).
func (r *run) alive() {
	var last *strategy.MarketData
	r.call(func() error {
		var err error
		last, err = r.h.api.ReadLastData(r.ctx, &strategy.ReadLastDataRequest{Symbol: r.h.cfg.Symbol})
		return err
	})
	var big string
	r.call(func() error {
		got, err := r.h.api.GetCache(r.ctx, &strategy.GetRequest{Key: "big"})
		big = got.GetValue()
		return err
	})
	r.check("alive", "last", formatTime(last.GetTime()), "big", strconv.Itoa(len(big)))
}

func (r *run) sql(q string, params ...string) error {
	_, err := r.h.api.ExecuteSQL(r.ctx, &strategy.ExecuteSQLRequest{Query: q, Params: params})
	return err
}

func (r *run) configure(kind strategy.IndicatorType, cfg string) error {
	_, err := r.h.api.ConfigureIndicator(r.ctx,
		&strategy.ConfigureRequest{IndicatorType: kind, Config: cfg})
	return err
}

func (r *run) signal(kind strategy.IndicatorType, bar *strategy.MarketData) error {
	_, err := r.h.api.GetSignal(r.ctx,
		&strategy.GetSignalRequest{IndicatorType: kind, MarketData: bar})
	return err
}

// name is an enum value's protobuf name, or its number if this ABI version has none.
func name(names map[int32]string, v int32) string {
	if n, ok := names[v]; ok {
		return n
	}
	return strconv.Itoa(int(v))
}

func formatTime(ts *timestamppb.Timestamp) string {
	return sdk.Time(ts).Format(time.RFC3339Nano)
}
