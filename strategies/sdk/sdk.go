// Package sdk holds the few helpers most kubetrade strategies want: static
// strategy metadata, strict config parsing, order builders, timestamp
// conversion and structured logging.
//
// The ABI itself lives in the generated package
// github.com/kubetrade/kubetrade/strategies/sdk/strategy; this package only
// saves boilerplate around it and never hides it. Nothing here calls the host
// on its own: helpers that talk to the host take a strategy.StrategyApi, so
// they can be tested natively with a fake.
package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/knqyf263/go-plugin/types/known/timestamppb"

	"github.com/kubetrade/kubetrade/strategies/sdk/strategy"
)

// Info answers the four descriptive calls of the TradingStrategy service
// (Name, GetIdentifier, GetDescription, GetConfigSchema) from fixed values.
// Embed it in a strategy type and implement Initialize and ProcessData.
type Info struct {
	StrategyName string // short human name, e.g. "sma-crossover"
	Identifier   string // stable reverse-DNS id, e.g. "io.kubetrade.examples.sma"
	Description  string // one paragraph for people choosing a strategy
	ConfigSchema string // a JSON schema of the config object
}

// Name implements strategy.TradingStrategy.
func (i Info) Name(context.Context, *strategy.NameRequest) (*strategy.NameResponse, error) {
	return &strategy.NameResponse{Name: i.StrategyName}, nil
}

// GetIdentifier implements strategy.TradingStrategy.
func (i Info) GetIdentifier(
	context.Context, *strategy.GetIdentifierRequest,
) (*strategy.GetIdentifierResponse, error) {
	return &strategy.GetIdentifierResponse{Identifier: i.Identifier}, nil
}

// GetDescription implements strategy.TradingStrategy.
func (i Info) GetDescription(
	context.Context, *strategy.GetDescriptionRequest,
) (*strategy.GetDescriptionResponse, error) {
	return &strategy.GetDescriptionResponse{Description: i.Description}, nil
}

// GetConfigSchema implements strategy.TradingStrategy.
func (i Info) GetConfigSchema(
	context.Context, *strategy.GetConfigSchemaRequest,
) (*strategy.GetConfigSchemaResponse, error) {
	return &strategy.GetConfigSchemaResponse{Schema: i.ConfigSchema}, nil
}

// ParseConfig decodes the JSON config passed to Initialize into dst, which
// should already hold the defaults. An empty or blank config keeps the
// defaults. Unknown keys are an error, so a misspelt setting is reported
// instead of silently ignored (keys match case-insensitively, as always
// with encoding/json).
func ParseConfig(raw string, dst any) error {
	if len(bytes.TrimSpace([]byte(raw))) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("invalid config: unexpected data after the JSON object")
	}
	return nil
}

// The two sides of an order, named for readability at call sites.
const (
	Buy  = strategy.PurchaseType_PURCHASE_TYPE_BUY
	Sell = strategy.PurchaseType_PURCHASE_TYPE_SELL
)

// MarketOrder builds a market order. The price is the strategy's reference
// price (usually the bar close); the broker fills at the market. The reason
// is recorded with the order as {reason: "strategy", message: why}. Set the
// returned order's Id to address it later with CancelOrder/GetOrderStatus.
func MarketOrder(
	symbol string, side strategy.PurchaseType, quantity, price float64, why string,
) *strategy.ExecuteOrder {
	return newOrder(symbol, side, strategy.OrderType_ORDER_TYPE_MARKET, quantity, price, why)
}

// LimitOrder builds a limit order that rests until the market reaches price.
func LimitOrder(
	symbol string, side strategy.PurchaseType, quantity, price float64, why string,
) *strategy.ExecuteOrder {
	return newOrder(symbol, side, strategy.OrderType_ORDER_TYPE_LIMIT, quantity, price, why)
}

func newOrder(
	symbol string, side strategy.PurchaseType, kind strategy.OrderType,
	quantity, price float64, why string,
) *strategy.ExecuteOrder {
	return &strategy.ExecuteOrder{
		Symbol:    symbol,
		Side:      side,
		OrderType: kind,
		Quantity:  quantity,
		Price:     price,
		Reason:    &strategy.Reason{Reason: "strategy", Message: why},
	}
}

// Epoch is the Unix epoch; use it as the start of an open-ended GetRange.
var Epoch = time.Unix(0, 0).UTC()

// Time converts a protobuf timestamp to a UTC time.Time; nil gives Epoch.
func Time(ts *timestamppb.Timestamp) time.Time {
	return ts.AsTime()
}

// Timestamp converts a time.Time to a protobuf timestamp.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	return timestamppb.New(t)
}

// Float formats a number for a log field: the shortest text that reads
// back as the same float64 ("2", "0.1", "101.25").
func Float(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Log sends one structured log line to the host. kv alternates field names
// and values; a trailing name without a value gets "".
func Log(
	ctx context.Context, api strategy.StrategyApi, level strategy.LogLevel,
	message string, kv ...string,
) error {
	fields := make(map[string]string, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		value := ""
		if i+1 < len(kv) {
			value = kv[i+1]
		}
		fields[kv[i]] = value
	}
	_, err := api.Log(ctx, &strategy.LogRequest{Level: level, Message: message, Fields: fields})
	return err
}

// Log levels, named for readability at call sites.
const (
	LevelDebug = strategy.LogLevel_LOG_LEVEL_DEBUG
	LevelInfo  = strategy.LogLevel_LOG_LEVEL_INFO
	LevelWarn  = strategy.LogLevel_LOG_LEVEL_WARN
	LevelError = strategy.LogLevel_LOG_LEVEL_ERROR
)
