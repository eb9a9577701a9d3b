//! `switchyard demo`: starts one scripted run through the gateway and prints its events
//! as they stream, the way a user would see them.

use crate::sse_client;
use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

pub struct DemoOptions {
    pub gateway_url: String,
    pub token: String,
    pub prompt: String,
}

/// The script the demo run plays: a message, a tool call, a file change, usage.
pub fn demo_script() -> Value {
    json!([
        {"message": {"text": "Looking at the workspace before making a change.", "chunks": 3}},
        {"toolCall": {"name": "shell", "input": {"command": "ls"}, "output": "README.md\nsrc\n", "exitCode": 0}},
        {"fileChange": {"path": "hello.txt", "change": "added"}},
        {"message": {"text": "Created hello.txt. Done.", "chunks": 2}},
        {"usage": {"inputTokens": 120, "outputTokens": 42}}
    ])
}

/// Runs the demo; returns the final status of the run.
pub async fn run(options: &DemoOptions) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let base = options.gateway_url.trim_end_matches('/');
    let response = http
        .post(format!("{base}/api/runs/start"))
        .bearer_auth(&options.token)
        .json(&json!({
            "provider": "scripted",
            "prompt": options.prompt,
            "providerOptions": {"script": demo_script()}
        }))
        .send()
        .await
        .context("could not reach the gateway")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 202 {
        bail!("starting the demo run failed with {status}: {body}");
    }
    let run_id = body["runId"].as_str().unwrap_or_default().to_owned();
    let stream_url = body["streamUrl"].as_str().unwrap_or_default().to_owned();
    println!("started run {run_id}; streaming {stream_url}");

    let stream = http
        .get(format!("{base}{stream_url}"))
        .bearer_auth(&options.token)
        .send()
        .await
        .context("could not open the run's event stream")?;
    if !stream.status().is_success() {
        bail!("the event stream answered {}", stream.status());
    }
    let mut frames = Box::pin(sse_client::frames(stream));
    let mut final_status = String::from("unknown");
    while let Some(frame) = frames.next().await {
        let frame = frame.context("the event stream broke")?;
        let Some(event) = frame.json() else { continue };
        println!("{}", describe(&event));
        if event["type"] == "run.completed" {
            final_status = event["data"]["status"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned();
        }
    }
    let run: Value = http
        .get(format!("{base}/api/runs/{run_id}"))
        .bearer_auth(&options.token)
        .send()
        .await?
        .json()
        .await
        .unwrap_or(Value::Null);
    println!(
        "run {run_id} ended {final_status}; GET /api/runs/{run_id} says status={}",
        run["status"].as_str().unwrap_or("?")
    );
    Ok(final_status)
}

/// One line per event: `#seq type  summary`.
pub fn describe(event: &Value) -> String {
    let data = &event["data"];
    let summary = match event["type"].as_str().unwrap_or("") {
        "message.delta" | "message.completed" | "reasoning.delta" => {
            format!("{:?}", data["text"].as_str().unwrap_or(""))
        }
        "tool.started" => format!("{} {}", data["name"].as_str().unwrap_or(""), data["input"]),
        "tool.output" => format!("{:?}", data["output"].as_str().unwrap_or("")),
        "run.completed" => {
            let mut s = data["status"].as_str().unwrap_or("").to_owned();
            if let Some(reason) = data["reason"].as_str() {
                s.push_str(&format!(" ({reason})"));
            }
            s
        }
        _ => data.to_string(),
    };
    format!(
        "#{:<3} {:<22} {}",
        event["seq"],
        event["type"].as_str().unwrap_or("?"),
        summary
    )
}
