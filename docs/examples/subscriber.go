// Follow the engine's events from Go, written only from the NATS spec.
//   go mod init sub && go get github.com/nats-io/nats.go && go run subscriber.go
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

type envelope struct {
	EventID string                 `json:"event_id"`
	Type    string                 `json:"type"`
	Source  string                 `json:"source"`
	Seq     int64                  `json:"seq"`
	Symbol  *string                `json:"symbol"`
	Data    map[string]interface{} `json:"data"`
}

func main() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// A signed operator command: HMAC-SHA256 of the exact body bytes, hex.
	body, _ := json.Marshal(map[string]interface{}{"ts": time.Now().UnixMilli()})
	mac := hmac.New(sha256.New, []byte(os.Getenv("TITAN_HMAC_SECRET")))
	mac.Write(body)
	msg := nats.NewMsg("titan.cmd.operator.status.v1")
	msg.Data = body
	msg.Header.Set("Titan-Signature", hex.EncodeToString(mac.Sum(nil)))
	reply, err := nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply.Data))

	js, _ := nc.JetStream()
	last := map[string]int64{}
	_, err = js.Subscribe("titan.evt.>", func(m *nats.Msg) {
		var e envelope
		if err := json.Unmarshal(m.Data, &e); err != nil {
			return
		}
		if e.Seq != last[e.Source]+1 {
			log.Printf("gap in %s: %d -> %d", e.Source, last[e.Source], e.Seq)
		}
		last[e.Source] = e.Seq
		fmt.Println(m.Subject, e.Type, e.Source, e.Seq)
	}, nats.OrderedConsumer(), nats.DeliverAll())
	if err != nil {
		log.Fatal(err)
	}
	select {}
}
