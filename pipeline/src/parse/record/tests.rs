//! Tests of the record parser.

use std::io::Read;
use std::path::Path;

use super::*;

fn parse(xml: &str) -> Vec<std::result::Result<Item, ParseError>> {
    parse_reader(xml.as_bytes(), "t.xml", &ParseOptions::default()).collect()
}

fn citations(xml: &str) -> Vec<Citation> {
    parse(xml)
        .into_iter()
        .map(|r| match r {
            Ok(Item::Citation(c)) => *c,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn legacy_medline_citation_set_with_all_columns() {
    let xml = r#"<?xml version="1.0"?>
<!DOCTYPE MedlineCitationSet PUBLIC "-//NLM//DTD Medline Citation, 1st January 2012//EN" "x.dtd">
<MedlineCitationSet>
 <MedlineCitation Owner="NLM" Status="MEDLINE">
  <PMID Version="3">17</PMID>
  <Article>
   <Journal><JournalIssue><PubDate><MedlineDate>1998 Fall-Winter</MedlineDate></PubDate></JournalIssue>
<Title>J  Test</Title><ISOAbbreviation>J Test</ISOAbbreviation></Journal>
   <ArticleTitle>A <i>b</i>c &amp; d</ArticleTitle>
   <ELocationID EIdType="doi">10.1/x</ELocationID>
   <Abstract>
 <AbstractText Label="AIM" NlmCategory="OBJECTIVE">one
   two</AbstractText>
 <AbstractText>three<sup>2</sup></AbstractText>
 <CopyrightInformation>(c) nobody</CopyrightInformation>
   </Abstract>
   <Language>eng</Language><Language>fre</Language>
   <PublicationTypeList><PublicationType UI="D1">Journal Article</PublicationType></PublicationTypeList>
  </Article>
  <ChemicalList><Chemical><RegistryNumber>0</RegistryNumber><NameOfSubstance UI="D2">Water</NameOfSubstance></Chemical></ChemicalList>
  <MeshHeadingList><MeshHeading><DescriptorName UI="D3" MajorTopicYN="Y">Heat</DescriptorName><QualifierName UI="Q1">x</QualifierName></MeshHeading></MeshHeadingList>
  <OtherAbstract Type="Publisher" Language="spa"><AbstractText Label="A">uno</AbstractText><AbstractText>dos</AbstractText></OtherAbstract>
  <KeywordList><Keyword>k1</Keyword><Keyword> k2 </Keyword></KeywordList>
 </MedlineCitation>
 <MedlineCitation><PMID>18</PMID></MedlineCitation>
</MedlineCitationSet>"#;
    let c = citations(xml);
    assert_eq!(c.len(), 2);
    let a = &c[0];
    assert_eq!((a.pmid, a.version, a.record_index), (17, 3, 0));
    assert_eq!(a.record_kind, RecordKind::MedlineCitation);
    assert_eq!(a.title.as_deref(), Some("A bc & d"));
    assert_eq!(a.abstract_text.as_deref(), Some("AIM: one two\nthree2"));
    assert_eq!(
        a.abstract_sections[0].nlm_category.as_deref(),
        Some("OBJECTIVE")
    );
    assert_eq!(a.abstract_sections[1].label, None);
    assert_eq!(a.year, Some(1998));
    assert_eq!(a.pub_date.as_deref(), Some("1998 Fall-Winter"));
    assert_eq!(a.journal_title.as_deref(), Some("J Test"));
    assert_eq!(a.languages, ["eng", "fre"]);
    assert_eq!(a.publication_types, ["Journal Article"]);
    assert_eq!(
        a.mesh,
        [MeshDescriptor {
            name: "Heat".into(),
            ui: Some("D3".into()),
            major_topic: true
        }]
    );
    assert_eq!(a.chemicals[0].name, "Water");
    assert_eq!(a.chemicals[0].registry_number.as_deref(), Some("0"));
    assert_eq!(a.other_abstracts[0].text, "A: uno\ndos");
    assert_eq!(a.other_abstracts[0].language.as_deref(), Some("spa"));
    assert_eq!(a.keywords, ["k1", "k2"]);
    assert_eq!(a.citation_status.as_deref(), Some("MEDLINE"));
    assert_eq!(a.doi, None, "doi comes from PubmedData/ArticleIdList only");
    let b = &c[1];
    assert_eq!((b.pmid, b.version, b.record_index), (18, 1, 1));
    assert_eq!(
        (b.title.clone(), b.abstract_text.clone(), b.year),
        (None, None, None)
    );
}

#[test]
fn book_and_deletions_and_ids() {
    let xml = r#"<PubmedArticleSet>
<PubmedBookArticle><BookDocument><PMID Version="1">5</PMID><ArticleIdList><ArticleId IdType="doi">no</ArticleId></ArticleIdList>
<Book><BookTitle>The <i>Book</i></BookTitle><PubDate><Year>2001</Year><Month>May</Month></PubDate></Book>
<Language>eng</Language><Abstract><AbstractText Label="">x</AbstractText></Abstract></BookDocument>
<PubmedBookData><ArticleIdList><ArticleId IdType="bookaccession">NBK1</ArticleId><ArticleId IdType="doi">10.2/b</ArticleId></ArticleIdList></PubmedBookData></PubmedBookArticle>
<PubmedArticle><MedlineCitation><PMID>6</PMID><Article><ArticleTitle/></Article></MedlineCitation>
<PubmedData><ArticleIdList><ArticleId IdType="pmc">PMC9</ArticleId></ArticleIdList>
<ReferenceList><Reference><ArticleIdList><ArticleId IdType="doi">10.9/ref</ArticleId></ArticleIdList></Reference></ReferenceList></PubmedData></PubmedArticle>
<DeleteCitation><PMID Version="1">7</PMID><PMID Version="2">8</PMID></DeleteCitation>
</PubmedArticleSet>"#;
    let items: Vec<Item> = parse(xml).into_iter().map(|r| r.unwrap()).collect();
    let Item::Citation(book) = &items[0] else {
        panic!()
    };
    assert_eq!(book.title.as_deref(), Some("The Book"));
    assert_eq!(book.doi.as_deref(), Some("10.2/b"));
    assert_eq!(book.abstract_text.as_deref(), Some("x"));
    assert_eq!(
        (book.year, book.pub_date.as_deref()),
        (Some(2001), Some("2001 May"))
    );
    let Item::Citation(art) = &items[1] else {
        panic!()
    };
    assert_eq!(art.title.as_deref(), Some(""));
    assert_eq!(
        (art.doi.as_deref(), art.pmc_id.as_deref()),
        (None, Some("PMC9"))
    );
    let Item::Deletion(d) = &items[3] else {
        panic!()
    };
    assert_eq!((d.pmid, d.version, d.record_index), (8, 2, 1));
    assert_eq!(items.len(), 4);
}

/// Every item (and error, with its offset) as the default parser yields them, for comparing.
fn items_with_chunk(xml: &[u8], chunk: usize) -> Vec<String> {
    RecordParser::with_chunk(xml, "t.xml", chunk)
        .map(|r| format!("{r:?}"))
        .collect()
}

#[test]
fn chunk_boundaries_anywhere_give_the_same_items() {
    // Markup, references, CDATA, comments, a DOCTYPE subset, U+FEFF in text, invalid UTF-8,
    // and a record error: cut at every byte, the items and error offsets must not change.
    let mut xml = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!DOCTYPE PubmedArticleSet [ <!ENTITY x \"y\"> ]>\n\
<PubmedArticleSet><!-- a > b --><PubmedArticle><MedlineCitation Status=\"MEDLINE\"><PMID Version=\"2\">11</PMID><Article>\
<ArticleTitle>\xEF\xBB\xBFp<sub>trend</sub> &lt;0.01 &#x3b1;&#946;<![CDATA[ <c> ]]>\xCE\xB1  z</ArticleTitle>\
<Abstract><AbstractText Label=\"A &amp; B\">one\n two</AbstractText><AbstractText>\xE2\x80\x89x</AbstractText></Abstract>\
</Article></MedlineCitation></PubmedArticle>\n\xEF\xBB\xBF\n<PubmedArticle><MedlineCitation><PMID>12</PMID>\
<Article><ArticleTitle>bad \xFF here</ArticleTitle></Article></MedlineCitation></PubmedArticle>\
<DeleteCitation><PMID Version=\"1\">13</PMID></DeleteCitation></PubmedArticleSet>\n"
        .to_vec();
    let whole = items_with_chunk(&xml, 1 << 20);
    assert_eq!(whole.len(), 3, "{whole:#?}");
    assert!(
        whole[0].contains("\"\\u{feff}ptrend <0.01 αβ <c> α z\""),
        "{}",
        whole[0]
    );
    assert!(whole[0].contains("\"A & B: one two\\nx\""), "{}", whole[0]);
    assert!(
        whole[1].contains("invalid UTF-8") && whole[1].contains("Some(12)"),
        "{}",
        whole[1]
    );
    for chunk in 1..=xml.len() {
        assert_eq!(items_with_chunk(&xml, chunk), whole, "chunk {chunk}");
    }
    // A truncated document ends with the same fatal error wherever the chunks end.
    xml.truncate(xml.len() - 30);
    let cut = items_with_chunk(&xml, 1 << 20);
    assert!(cut.last().unwrap().contains("truncated"), "{cut:?}");
    for chunk in [1, 2, 3, 5, 8, 13, 64, 100] {
        assert_eq!(items_with_chunk(&xml, chunk), cut, "chunk {chunk}");
    }
}

/// Found by `just fuzz-parse`: with the first BOM skipped, quick-xml dropped a second one as a
/// BOM too, so the error depended on where the buffer ended.
#[test]
fn only_the_first_bom_is_a_byte_order_mark() {
    let xml = b"\xEF\xBB\xBF\xEF\xBB\xBF<FFFFFFFFFF,,,,,,,,&lt;,,,,,,";
    for chunk in [1, 3, 4, 32, 1 << 20] {
        let items = items_with_chunk(xml, chunk);
        assert_eq!(items.len(), 1, "{items:?}");
        assert!(
            items[0].contains("offset: 3,") && items[0].contains("text outside the root element"),
            "chunk {chunk}: {items:?}"
        );
    }
    let ok = items_with_chunk(b"\xEF\xBB\xBF<PubmedArticleSet/>", 1 << 20);
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn chunk_boundaries_in_the_sample_give_the_same_items() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/sample/pubmed/baseline/pubmed26n0001.xml.gz");
    let mut xml = Vec::new();
    open_input(&path).unwrap().read_to_end(&mut xml).unwrap();
    let whole = items_with_chunk(&xml, 1 << 20);
    assert_eq!(whole.len(), 100);
    for chunk in [97, 1000, 4096, 65_537] {
        assert_eq!(items_with_chunk(&xml, chunk), whole, "chunk {chunk}");
    }
}

#[test]
fn recoverable_errors_continue_and_fatal_errors_stop() {
    let xml = "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><ArticleTitle>&nbsp;</ArticleTitle></Article></MedlineCitation></PubmedArticle>\
<PubmedArticle><MedlineCitation><PMID>x2</PMID></MedlineCitation></PubmedArticle>\
<PubmedArticle><MedlineCitation><PMID>3</PMID></MedlineCitation></PubmedArticle></PubmedArticleSet>";
    let r = parse(xml);
    assert_eq!(r.len(), 3);
    let e = r[0].as_ref().unwrap_err();
    assert!(
        e.recoverable && e.message.contains("unknown entity &nbsp;"),
        "{e}"
    );
    assert_eq!(e.pmid, Some(1));
    assert!(
        r[1].as_ref()
            .unwrap_err()
            .message
            .contains("\"x2\" is not a number")
    );
    assert!(matches!(&r[2], Ok(Item::Citation(c)) if c.pmid == 3 && c.record_index == 2));

    let bad = parse(
        "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID></Medline></PubmedArticle>",
    );
    assert_eq!(bad.len(), 1);
    assert!(!bad[0].as_ref().unwrap_err().recoverable);
    for xml in [
        "",
        "<Foo/>",
        "<PubmedArticleSet>",
        "<PubmedArticleSet/>junk",
    ] {
        let r = parse(xml);
        if xml == "<PubmedArticleSet/>junk" {
            assert!(r.iter().any(|x| x.is_err()), "{xml:?}");
        } else {
            assert!(
                matches!(r.last(), Some(Err(e)) if !e.recoverable),
                "{xml:?}: {r:?}"
            );
        }
    }
}

/// Held-out PubMed: a labelled section without text (`CLINICALTRIALS`) followed by its value in the
/// next section; an unlabelled empty section; an empty date part; whitespace inside attributes.
#[test]
fn empty_sections_and_parts_never_leave_a_separator() {
    let xml = r#"<PubmedArticleSet><PubmedArticle><MedlineCitation Status=" MEDLINE ">
<PMID Version="1">5</PMID>
<Article><Journal><JournalIssue><PubDate><Year>2020</Year><Month></Month><Season> Spring </Season></PubDate></JournalIssue></Journal>
<ArticleTitle>T</ArticleTitle>
<Abstract>
 <AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Some  text.</AbstractText>
 <AbstractText Label="CLINICALTRIALS" NlmCategory="RESULTS"/>
 <AbstractText Label="GOV ID">NCT01234567</AbstractText>
 <AbstractText> </AbstractText>
 <AbstractText Label=" TRIAL
   REGISTRATION  " NlmCategory=" UNASSIGNED "><i> </i></AbstractText>
</Abstract>
</Article>
<OtherAbstract Type="Publisher" Language="spa"><AbstractText Label="REGISTRO"></AbstractText><AbstractText/><AbstractText>uno</AbstractText></OtherAbstract>
</MedlineCitation></PubmedArticle></PubmedArticleSet>"#;
    let c = &citations(xml)[0];
    assert_eq!(
        c.abstract_text.as_deref(),
        Some("BACKGROUND: Some text.\nCLINICALTRIALS:\nGOV ID: NCT01234567\nTRIAL REGISTRATION:")
    );
    // The sections themselves are all kept, empty ones included.
    let sections: Vec<(Option<&str>, Option<&str>, &str)> = c
        .abstract_sections
        .iter()
        .map(|s| {
            (
                s.label.as_deref(),
                s.nlm_category.as_deref(),
                s.text.as_str(),
            )
        })
        .collect();
    assert_eq!(
        sections,
        [
            (Some("BACKGROUND"), Some("BACKGROUND"), "Some text."),
            (Some("CLINICALTRIALS"), Some("RESULTS"), ""),
            (Some("GOV ID"), None, "NCT01234567"),
            (None, None, ""),
            (Some("TRIAL REGISTRATION"), Some("UNASSIGNED"), ""),
        ]
    );
    assert_eq!(c.other_abstracts[0].text, "REGISTRO:\nuno");
    assert_eq!(c.pub_date.as_deref(), Some("2020 Spring"));
    assert_eq!(c.citation_status.as_deref(), Some("MEDLINE"));
}

/// Property: for any mix of labelled/unlabelled, empty/whitespace/non-empty sections, the joined
/// abstract is the non-empty lines `Label: text` / `Label:` / `text`, and no value breaks the text
/// contract (no whitespace at either end, no double space, no empty line).
#[test]
fn joined_abstract_property_on_random_sections() {
    let labels = [
        None,
        Some(""),
        Some(" "),
        Some("A"),
        Some(" B  C "),
        Some("GOV\nID"),
    ];
    let texts = [
        "",
        " ",
        "\n\t",
        "x",
        " y  z ",
        "<i> </i>",
        "<i>a</i> <b>b</b>",
    ];
    let plain = |t: &str| {
        crate::parse::text::collapse(
            &t.replace("<i>", "")
                .replace("</i>", "")
                .replace("<b>", "")
                .replace("</b>", ""),
        )
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..500 {
        let n = next(5);
        let mut body = String::new();
        let mut want = Vec::new();
        for _ in 0..n {
            let label = labels[next(labels.len())];
            let text = texts[next(texts.len())];
            match label {
                Some(l) => body.push_str(&format!(
                    "<AbstractText Label=\"{l}\">{text}</AbstractText>"
                )),
                None => body.push_str(&format!("<AbstractText>{text}</AbstractText>")),
            }
            let label = label
                .map(crate::parse::text::collapse)
                .filter(|l| !l.is_empty());
            let text = plain(text);
            match (label, text.is_empty()) {
                (Some(l), true) => want.push(format!("{l}:")),
                (Some(l), false) => want.push(format!("{l}: {text}")),
                (None, false) => want.push(text),
                (None, true) => {}
            }
        }
        let xml = format!(
            "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><Abstract>{body}</Abstract></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>"
        );
        let c = &citations(&xml)[0];
        let got = c.abstract_text.as_deref().unwrap();
        assert_eq!(got, want.join("\n"), "round {round}: {xml}");
        for line in got.split('\n').filter(|_| !got.is_empty()) {
            assert!(!line.is_empty(), "round {round}: empty line in {got:?}");
            assert_eq!(line, line.trim(), "round {round}: {got:?}");
            assert!(!line.contains("  "), "round {round}: {got:?}");
        }
    }
}
