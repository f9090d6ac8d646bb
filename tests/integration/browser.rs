//! A real browser following a watch: headless Chromium opens a page served by the test,
//! whose script reads `/v1/{topic}/watch` with `EventSource` and shows each event; the test
//! writes meanwhile and reads back what the page shows.
//!
//! The page and the API share one origin (as behind the usual reverse proxy): the test's
//! server answers the page and its reports itself and passes every `/v1/` request through
//! to kvstore unchanged.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{Broker, Server, topic};

/// Writes made while the page watches.
const WRITES: usize = 5;

/// The page: follows the `b/` keys of `TOPIC`, lists each put, says when it is open and
/// posts what it shows once it shows `COUNT` of them.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>kvstore watch</title></head>
<body><ul id="events"></ul>
<script>
const list = document.getElementById("events");
const source = new EventSource("/v1/TOPIC/watch?prefix=b/");
source.onopen = () => fetch("/opened", { method: "POST" });
source.addEventListener("put", (event) => {
  const item = JSON.parse(event.data);
  const line = document.createElement("li");
  line.textContent = `${event.lastEventId} ${item.key}=${item.value}`;
  list.appendChild(line);
  if (list.children.length === COUNT) {
    const shown = Array.from(list.children, (li) => li.textContent);
    fetch("/report", { method: "POST", body: JSON.stringify(shown) });
  }
});
</script></body></html>
"#;

/// Chromium, if installed: `KVSTORE_TEST_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KVSTORE_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file())
    })
}

/// What the page tells the test.
enum Message {
    Opened,
    Report(Vec<String>),
}

/// Serves `page` at `/`, takes the page's posts, and passes `/v1/` through to `upstream`.
fn serve(listener: TcpListener, page: String, upstream: String, messages: mpsc::Sender<Message>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let (page, upstream, messages) = (page.clone(), upstream.clone(), messages.clone());
        std::thread::spawn(move || handle(stream, &page, &upstream, &messages));
    }
}

fn handle(mut stream: TcpStream, page: &str, upstream: &str, messages: &mpsc::Sender<Message>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
    if path.starts_with("/v1/") {
        // One request a connection, passed through byte for byte.
        let Ok(mut api) = TcpStream::connect(upstream) else {
            return;
        };
        let head = text.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        if api.write_all(head.as_bytes()).is_err() {
            return;
        }
        if let (Ok(mut from_api), Ok(mut to_client)) = (api.try_clone(), stream.try_clone()) {
            std::thread::spawn(move || std::io::copy(&mut from_api, &mut to_client));
        }
        let _ = std::io::copy(&mut stream, &mut api);
        return;
    }
    let length: usize = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    if stream.read_exact(&mut body).is_err() {
        return;
    }
    let (status, body) = match path.as_str() {
        "/" => ("200 OK", page),
        "/opened" => {
            let _ = messages.send(Message::Opened);
            ("204 No Content", "")
        }
        "/report" => {
            let shown = serde_json::from_slice(&body).unwrap_or_default();
            let _ = messages.send(Message::Report(shown));
            ("204 No Content", "")
        }
        _ => ("404 Not Found", ""),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// Headless Chromium showing `url`, killed on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(chromium: &PathBuf, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile folder");
        let child = Command::new(chromium)
            .arg("--headless=new")
            // The tests may run as root, where Chromium's sandbox cannot start.
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_browser_event_source_shows_the_writes_made_while_it_watches() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "\n!!! SKIPPED: Chromium is not installed (apt-get install chromium, or set \
             KVSTORE_TEST_CHROMIUM); `.ci/run` installs it !!!\n"
        );
        return;
    };
    let broker = Broker::shared();
    let topic = topic("browser");
    let server = Server::start(&broker.address());
    server.put_ok(&topic, "a/0", "not watched").await;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    let upstream = server.base().trim_start_matches("http://").to_owned();
    let page = PAGE
        .replace("TOPIC", &topic)
        .replace("COUNT", &WRITES.to_string());
    let (messages, received) = mpsc::channel();
    std::thread::spawn(move || serve(listener, page, upstream, messages));
    let _browser = Browser::open(&chromium, &url);

    let wait = |timeout: Duration| {
        received
            .recv_timeout(timeout)
            .expect("the page reports in time")
    };
    assert!(
        matches!(wait(Duration::from_secs(60)), Message::Opened),
        "the page's first word is that its stream is open"
    );
    let mut expected = Vec::new();
    for i in 0..WRITES {
        server
            .put(&topic, "a/1", "not watched either", "text/plain")
            .await;
        let (status, body) = server
            .put(
                &topic,
                &format!("b/{i}"),
                format!("value {i}"),
                "text/plain",
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let offset = body["offset"].as_i64().expect("offset");
        expected.push(format!("{offset} b/{i}=value {i}"));
    }
    let shown = match wait(Duration::from_secs(30)) {
        Message::Report(shown) => shown,
        Message::Opened => panic!("the page opened its stream twice"),
    };
    assert_eq!(
        shown, expected,
        "the page shows every write, in order, with its offset"
    );
}
