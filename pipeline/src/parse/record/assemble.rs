//! Assembling a record: the captured text of a closed leaf goes into the draft record, and a closed
//! record becomes a [`Citation`] (or the recoverable error found inside it); a `DeleteCitation`
//! PMID becomes a [`Deletion`] at once.

use std::io::Read;

use super::super::text::{first_year, join_non_empty, join_sections, section_line};
use super::chunks::RecordParser;
use super::states::Field;
use super::types::{
    Citation, Deletion, Item, MeshDescriptor, ParseError, RecordKind, Section, Step,
};

impl<R: Read> RecordParser<R> {
    pub(super) fn finish_leaf(&mut self, field: Field, text: String, offset: u64) -> Step {
        let attrs = std::mem::take(&mut self.leaf_attrs);
        let d = &mut self.draft;
        match field {
            Field::Pmid => {
                if d.pmid.is_none() {
                    let Ok(pmid) = text.parse::<u64>() else {
                        self.record_error(offset, format!("PMID {text:?} is not a number"))?;
                        return Ok(None);
                    };
                    d.pmid = Some(pmid);
                    match attrs.a.as_deref().map(str::parse::<u32>) {
                        None => {}
                        Some(Ok(v)) => d.version = v,
                        Some(Err(_)) => self.record_error(
                            offset,
                            format!("PMID Version {:?} is not a number", attrs.a),
                        )?,
                    }
                }
            }
            Field::DeletedPmid => {
                let index = self.deletions_seen;
                self.deletions_seen += 1;
                let pmid = text.parse::<u64>().map_err(|_| {
                    self.error(
                        offset,
                        true,
                        format!("deleted PMID {text:?} is not a number"),
                    )
                })?;
                let version = match attrs.a.as_deref().map(str::parse::<u32>) {
                    None => 1,
                    Some(Ok(v)) => v,
                    Some(Err(_)) => {
                        return Err(self.error(
                            offset,
                            true,
                            format!(
                                "deleted PMID {pmid} has a non-numeric Version {:?}",
                                attrs.a
                            ),
                        ));
                    }
                };
                return Ok(Some(Item::Deletion(Deletion {
                    pmid,
                    version,
                    source_file: self.source.clone(),
                    record_index: index,
                })));
            }
            Field::Title => {
                if d.title.is_none() {
                    d.title = Some(text);
                }
            }
            Field::BookTitle => {
                if d.book_title.is_none() {
                    d.book_title = Some(text);
                }
            }
            Field::JournalTitle => {
                if d.journal_title.is_none() {
                    d.journal_title = Some(text);
                }
            }
            Field::IsoAbbreviation => {
                if d.iso_abbreviation.is_none() {
                    d.iso_abbreviation = Some(text);
                }
            }
            Field::Year | Field::MedlineDate | Field::DatePart => {
                if !d.pub_date_closed {
                    if field == Field::Year && d.year_text.is_none() {
                        d.year_text = Some(text.clone());
                    }
                    if field == Field::MedlineDate && d.medline_date.is_none() {
                        d.medline_date = Some(text.clone());
                    }
                    d.date_parts.push(text);
                }
            }
            Field::Section => {
                if !d.abstract_closed {
                    d.sections.push(Section {
                        label: attrs.a.filter(|l| !l.is_empty()),
                        nlm_category: attrs.b,
                        text,
                    });
                }
            }
            Field::OtherSection => {
                let label = attrs.a.filter(|l| !l.is_empty());
                if let Some(line) = section_line(label.as_deref(), &text) {
                    d.other_parts.push(line);
                }
            }
            Field::Language => d.languages.push(text),
            Field::PublicationType => d.publication_types.push(text),
            Field::Mesh => d.mesh.push(MeshDescriptor {
                name: text,
                ui: attrs.a,
                major_topic: attrs.b.as_deref() == Some("Y"),
            }),
            Field::Keyword => d.keywords.push(text),
            Field::RegistryNumber => {
                if let Some(c) = d.chemicals.last_mut() {
                    c.registry_number = Some(text);
                }
            }
            Field::Substance => {
                if let Some(c) = d.chemicals.last_mut() {
                    c.name = text;
                    c.ui = attrs.a;
                }
            }
            Field::ArticleId => {
                if !d.id_list_closed {
                    match attrs.a.as_deref() {
                        Some("doi") if d.doi.is_none() => d.doi = Some(text),
                        Some("pmc") if d.pmc_id.is_none() => d.pmc_id = Some(text),
                        _ => {}
                    }
                }
            }
        }
        Ok(None)
    }

    pub(super) fn finish_record(&mut self) -> Step {
        let d = std::mem::take(&mut self.draft);
        let index = self.citations_seen;
        self.citations_seen += 1;
        let kind = d.kind.unwrap_or(RecordKind::PubmedArticle);
        if let Some((offset, message)) = d.error {
            return Err(ParseError {
                source_name: self.source.to_string(),
                offset,
                pmid: d.pmid,
                recoverable: true,
                message: format!("{} record #{index}: {message}", kind.as_str()),
            });
        }
        let Some(pmid) = d.pmid else {
            return Err(ParseError {
                source_name: self.source.to_string(),
                offset: d.start_offset,
                pmid: None,
                recoverable: true,
                message: format!(
                    "{} record #{index} has no PMID (expected {})",
                    kind.as_str(),
                    if kind == RecordKind::PubmedBookArticle {
                        "BookDocument/PMID"
                    } else {
                        "MedlineCitation/PMID"
                    }
                ),
            });
        };
        let abstract_text = d.has_abstract.then(|| {
            join_sections(
                d.sections
                    .iter()
                    .map(|s| (s.label.as_deref(), s.text.as_str())),
            )
        });
        let year = match (&d.year_text, &d.medline_date) {
            (Some(y), _) => first_year(y),
            (None, Some(m)) => first_year(m),
            (None, None) => None,
        };
        let pub_date = (d.pub_date_seen && !d.date_parts.is_empty())
            .then(|| join_non_empty(&d.date_parts, " "));
        let title = d.title.or(d.book_title);
        Ok(Some(Item::Citation(Box::new(Citation {
            pmid,
            version: d.version,
            title,
            abstract_text,
            abstract_sections: d.sections,
            other_abstracts: d.other_abstracts,
            languages: d.languages,
            journal_title: d.journal_title,
            iso_abbreviation: d.iso_abbreviation,
            year,
            pub_date,
            publication_types: d.publication_types,
            mesh: d.mesh,
            keywords: d.keywords,
            chemicals: d.chemicals,
            doi: d.doi,
            pmc_id: d.pmc_id,
            citation_status: d.citation_status,
            record_kind: kind,
            source_file: self.source.clone(),
            record_index: index,
        }))))
    }
}
