//! A local efetch server: serves `<PubmedArticle>` records by PMID as NCBI's efetch does.

use super::*;

pub(super) type RequestLog = Arc<Mutex<Vec<(Instant, Vec<u64>)>>>;

pub(super) struct Server {
    pub(super) url: String,
    /// (arrival time, requested ids) per request.
    pub(super) log: RequestLog,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&#160;")
}

/// Serve `records` (PMID → `<PubmedArticle>` XML) as efetch does; unknown PMIDs are left out.
pub(super) fn start_server(records: HashMap<u64, String>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let arrived = Instant::now();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let query = target.split_once('?').map(|x| x.1).unwrap_or("");
            let params: HashMap<&str, &str> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let ids: Vec<u64> = params
                .get("id")
                .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default();
            let ok = target.starts_with("/entrez/eutils/efetch.fcgi")
                && params.get("db") == Some(&"pubmed")
                && params.get("retmode") == Some(&"xml");
            log2.lock().unwrap().push((arrived, ids.clone()));
            let mut body = String::from(
                "<?xml version=\"1.0\" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC \"-//NLM//DTD PubMedArticle, 1st January 2025//EN\" \"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd\">\n<PubmedArticleSet>\n",
            );
            for id in &ids {
                if let Some(r) = records.get(id) {
                    body.push_str(r);
                    body.push('\n');
                }
            }
            body.push_str("</PubmedArticleSet>\n");
            let status = if ok { "200 OK" } else { "400 Bad Request" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Server { url, log }
}

pub(super) fn record_xml(pmid: u64, title: &str, sections: &[(Option<&str>, &str)]) -> String {
    let mut s = format!(
        "<PubmedArticle><MedlineCitation Status=\"MEDLINE\" Owner=\"NLM\"><PMID Version=\"1\">{pmid}</PMID><Article PubModel=\"Print\"><ArticleTitle>{}</ArticleTitle><Abstract>",
        xml_escape(title)
    );
    for (label, text) in sections {
        match label {
            Some(l) => s.push_str(&format!(
                "<AbstractText Label=\"{}\" NlmCategory=\"UNASSIGNED\">{}</AbstractText>",
                xml_escape(l),
                xml_escape(text)
            )),
            None => s.push_str(&format!(
                "<AbstractText>{}</AbstractText>",
                xml_escape(text)
            )),
        }
    }
    s.push_str("</Abstract><Language>eng</Language></Article></MedlineCitation><PubmedData><ArticleIdList><ArticleId IdType=\"pubmed\">");
    s.push_str(&format!(
        "{pmid}</ArticleId></ArticleIdList></PubmedData></PubmedArticle>"
    ));
    s
}
