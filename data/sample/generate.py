#!/usr/bin/env python3
"""Deterministic generator for biomamba's synthetic sample data.

Run from anywhere:  python3 data/sample/generate.py

Everything written under data/sample/ (except this script and README.md) is
produced here from a fixed seed using only the Python 3.11 standard library.
Re-running the script must reproduce byte-identical files (gzip mtime=0, no
dict/set ordering that depends on hash randomisation, no timestamps).

All text is SYNTHETIC: gene symbols, drug names, journals, authors and findings
are invented from templates and word lists.  None of it is real biomedical
knowledge and none of it is copied from real PubMed records.

Outputs
  pubmed/baseline/pubmed26n0001.xml.gz (+ .md5)   baseline-format citations
  pubmed/updatefiles/pubmed26n0002.xml.gz (+ .md5) update-format citations
  expect/pubmed26n0001.jsonl, expect/pubmed26n0002.jsonl
  bioasq/training-sample.json, bioasq/test-batch1_golden.json,
  bioasq/test-batch2_golden.json, bioasq/squad-train-sample.json,
  bioasq/squad-test-sample.json
  corpus/c4/en/c4-train.00000-of-00001.json.gz     synthetic web text, C4's layout
  corpus-src/wikipedia-articles.jsonl              synthetic articles; the Parquet
      corpus/wikipedia/20231101.en/train-00000-of-00001.parquet is written from it by
      `cargo run -p testkit --example sample_wikipedia` (the Parquet writer is Rust's)
"""

import gzip
import hashlib
import json
import os
import random
import re
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20260126

BASE_PMID = 90000001          # baseline: 90000001 .. 90000100
UPDATE_PMID = 90000101        # new records in the update file
MISSING_PMIDS = [99999901, 99999902]  # referenced by BioASQ tests, never in any XML
N_BASELINE = 100

DOCTYPE = ('<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
           '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">')
MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"'


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def esc_attr(s):
    return esc(s).replace('"', "&quot;")


# ---------------------------------------------------------------------------
# Word lists (synthetic entities; real-sounding morphology)
# ---------------------------------------------------------------------------

DISEASES = [
    "idiopathic pulmonary fibrosis", "type 2 diabetes mellitus", "hepatocellular carcinoma",
    "rheumatoid arthritis", "systemic lupus erythematosus", "chronic kidney disease",
    "Parkinson's disease", "amyotrophic lateral sclerosis", "multiple sclerosis",
    "triple-negative breast cancer", "pancreatic ductal adenocarcinoma", "glioblastoma",
    "heart failure with preserved ejection fraction", "atrial fibrillation",
    "non-alcoholic steatohepatitis", "ulcerative colitis", "Crohn's disease", "psoriasis",
    "atopic dermatitis", "chronic obstructive pulmonary disease", "acute myeloid leukemia",
    "diffuse large B-cell lymphoma", "multiple myeloma", "osteoarthritis", "osteoporosis",
    "sickle cell disease", "cystic fibrosis", "Duchenne muscular dystrophy",
    "spinal muscular atrophy", "Huntington's disease", "age-related macular degeneration",
    "primary open-angle glaucoma", "pulmonary arterial hypertension", "sepsis",
    "community-acquired pneumonia", "tuberculosis", "malaria", "dengue fever",
    "pre-eclampsia", "gestational diabetes", "autism spectrum disorder",
    "major depressive disorder", "schizophrenia", "migraine", "epilepsy",
    "colorectal cancer", "melanoma", "prostate cancer", "ovarian cancer", "endometriosis",
]

GENE_PARTS_A = ["SYN", "VEL", "KOR", "TAM", "BRX", "PLN", "DAX", "MOR", "ZEP", "CRT",
                "NUV", "HEL", "QUR", "FAB", "LOX", "RIP", "GAL", "TEK", "WNR", "OST"]
GENE_FULL_A = ["synaptic", "vesicle-linked", "kinase-ortholog", "tumor-associated",
               "bromo-extended", "plasma-lemmal", "DNA-associated", "morphogenetic",
               "zinc-finger epsilon", "chromatin-remodeling", "nuclear-universal",
               "helicase-like", "quiescence-regulating", "fatty-acid-binding",
               "lysyl-oxidase-like", "receptor-interacting", "galectin-related",
               "tyrosine-kinase-embedded", "Wnt-responsive", "osteo-specific"]
GENE_FULL_B = ["kinase", "regulator", "adaptor protein", "transcription factor",
               "phosphatase", "ubiquitin ligase", "channel subunit", "methyltransferase"]

DRUG_PREFIX = ["vel", "tran", "zor", "mab", "qui", "dela", "sota", "reva", "pexi", "lumi",
               "cara", "feno", "ibra", "tela", "olo", "navi", "ruxo", "sapa", "bexa", "ceri"]
DRUG_MID = ["ra", "zo", "li", "ta", "mi", "ne", "po", "ve", "du", "ci"]
DRUG_STEM = [("tinib", "tyrosine kinase inhibitor"), ("rasib", "covalent KRAS inhibitor"),
             ("parib", "PARP inhibitor"), ("ciclib", "CDK4/6 inhibitor"),
             ("lisib", "PI3K inhibitor"), ("zumab", "humanized monoclonal antibody"),
             ("ximab", "chimeric monoclonal antibody"), ("gliptin", "DPP-4 inhibitor"),
             ("sartan", "angiotensin receptor blocker"), ("vastatin", "HMG-CoA reductase inhibitor"),
             ("prazole", "proton pump inhibitor"), ("mycin", "macrolide antibiotic"),
             ("previr", "protease inhibitor"), ("dronate", "bisphosphonate"),
             ("gliflozin", "SGLT2 inhibitor"), ("setron", "5-HT3 receptor antagonist")]

CELL_TYPES = ["CD8+ T cells", "regulatory T cells", "tumor-associated macrophages",
              "cancer-associated fibroblasts", "hepatic stellate cells", "podocytes",
              "cardiomyocytes", "microglia", "astrocytes", "alveolar type II cells",
              "intestinal stem cells", "keratinocytes", "endothelial progenitor cells",
              "plasmacytoid dendritic cells", "natural killer cells", "osteoclasts",
              "beta cells", "neutrophils", "mast cells", "Schwann cells"]
TISSUES = ["lung", "liver", "kidney", "colon", "skin", "synovial", "bone marrow",
           "adipose", "retinal", "cortical", "hippocampal", "placental", "muscle", "pancreatic"]
CELL_LINES = ["HEK293T", "HeLa", "A549", "MCF-7", "HepG2", "U87", "Caco-2", "THP-1",
              "Jurkat", "SH-SY5Y", "PANC-1", "HCT116"]
METHODS = ["single-cell RNA sequencing", "whole-exome sequencing", "mass cytometry",
           "chromatin immunoprecipitation followed by sequencing", "spatial transcriptomics",
           "quantitative proteomics", "untargeted metabolomics", "CRISPR-Cas9 screening",
           "flow cytometry", "immunohistochemistry", "bulk RNA sequencing",
           "ATAC-seq", "Mendelian randomization", "machine-learning classification",
           "diffusion tensor imaging", "cryo-electron microscopy", "live-cell imaging",
           "targeted bisulfite sequencing", "Western blotting", "quantitative PCR"]
DESIGNS = ["prospective cohort study", "retrospective cohort study", "randomized, double-blind, placebo-controlled trial",
           "multicentre case-control study", "cross-sectional survey", "open-label phase II trial",
           "nested case-control analysis", "population-based registry study", "pragmatic cluster-randomized trial"]
POPULATIONS = ["adults", "children", "older adults", "postmenopausal women", "adolescents",
               "hospitalized patients", "outpatients", "pregnant women", "veterans", "kidney transplant recipients"]
PATHWAYS = ["NF-kB", "JAK-STAT", "mTORC1", "Hippo-YAP", "Wnt/beta-catenin", "Notch", "Hedgehog",
            "TGF-beta/SMAD", "cGAS-STING", "AMPK", "MAPK/ERK", "PI3K-AKT", "NLRP3 inflammasome",
            "unfolded protein response", "ferroptosis", "autophagy"]
PROCESSES = ["epithelial-mesenchymal transition", "mitochondrial biogenesis", "lipid droplet accumulation",
             "T-cell exhaustion", "synaptic pruning", "fibroblast activation", "insulin secretion",
             "angiogenesis", "DNA damage repair", "cellular senescence", "oxidative stress",
             "macrophage polarization", "neuronal apoptosis", "extracellular matrix deposition",
             "glycolytic reprogramming", "barrier dysfunction"]
BIOMARKERS = ["interleukin-6", "C-reactive protein", "soluble ST2", "growth differentiation factor 15",
              "neurofilament light chain", "cystatin C", "procalcitonin", "galectin-3",
              "fibroblast growth factor 23", "YKL-40", "calprotectin", "osteopontin",
              "lipoprotein(a)", "troponin T", "kidney injury molecule-1", "serum amyloid A"]
ENDPOINTS = ["progression-free survival", "overall survival", "all-cause mortality",
             "hospital readmission", "disease activity score", "forced vital capacity decline",
             "HbA1c reduction", "estimated glomerular filtration rate slope", "pain intensity",
             "quality-adjusted life years", "time to first exacerbation", "complete remission rate",
             "six-minute walk distance", "length of stay"]
ADVERSE = ["nausea", "diarrhoea", "fatigue", "neutropenia", "rash", "headache", "hypertension",
           "elevated transaminases", "peripheral oedema", "thrombocytopenia", "arthralgia", "insomnia"]
COVARIATES = ["body mass index", "smoking status", "education", "baseline eGFR", "diabetes",
              "prior hospitalization", "socioeconomic status", "alcohol intake", "physical activity"]
MODELS = ["Cox proportional hazards regression", "multivariable logistic regression",
          "linear mixed-effects models", "Poisson regression", "generalized estimating equations",
          "inverse probability weighting", "propensity score matching", "Bayesian hierarchical models"]
ORGANISMS = ["mice", "zebrafish larvae", "rats", "organoids", "non-human primates", "Drosophila"]
COUNTRIES = ["Norway", "Brazil", "Japan", "Kenya", "Canada", "Spain", "India", "Australia",
             "Germany", "Chile", "Vietnam", "Netherlands"]
INHERITANCE = ["autosomal dominant", "autosomal recessive", "X-linked recessive", "mitochondrial"]
ENZYME_NOUNS = ["hydroxylase", "dehydrogenase", "transaminase", "synthase", "isomerase", "lyase"]

JOURNALS = [
    ("Journal of Synthetic Translational Medicine", "J Synth Transl Med", "2950-0001", "United States"),
    ("Annals of Computational Oncology", "Ann Comput Oncol", "2950-0028", "England"),
    ("Clinical Reports in Nephrology and Hypertension", "Clin Rep Nephrol Hypertens", "2950-0036", "Netherlands"),
    ("Neurodegeneration Research Letters", "Neurodegener Res Lett", "2950-0044", "Germany"),
    ("International Journal of Respiratory Biology", "Int J Respir Biol", "2950-0052", "Switzerland"),
    ("Cellular Immunology Frontiers", "Cell Immunol Front", "2950-0060", "Switzerland"),
    ("Metabolism and Endocrine Science", "Metab Endocr Sci", "2950-0079", "United States"),
    ("Revista Iberoamericana de Medicina Sintetica", "Rev Iberoam Med Sint", "2950-0087", "Spain"),
    ("Pediatric Evidence Quarterly", "Pediatr Evid Q", "2950-0095", "Canada"),
    ("Molecular Hepatology and Gastroenterology", "Mol Hepatol Gastroenterol", "2950-0109", "Japan"),
]

LAST_NAMES = ["Okafor", "Lindqvist", "Tanaka", "Moreau", "Rahman", "Kowalski", "Ferreira", "Nguyen",
              "Haddad", "Olsen", "Castillo", "Petrov", "Mensah", "Fischer", "Kaur", "Ibrahim", "Sato",
              "Novak", "Alvarez", "Brennan", "Chen", "Duarte", "Eriksen", "Gallo", "Horvath", "Jovanovic"]
FIRST_NAMES = [("Amara", "A"), ("Jonas", "J"), ("Keiko", "K"), ("Lucien", "L"), ("Farida", "F"),
               ("Marek", "M"), ("Beatriz", "B"), ("Thanh", "T"), ("Omar", "O"), ("Ingrid", "I"),
               ("Diego", "D"), ("Elena", "E"), ("Kwame", "K"), ("Sophie", "S"), ("Harpreet", "H"),
               ("Nadia", "N"), ("Ren", "R"), ("Pavel", "P"), ("Clara", "C"), ("Gustavo", "G")]
DEPTS = ["Department of Medicine", "Division of Molecular Pathology", "Institute of Biostatistics",
         "Department of Pediatrics", "Laboratory of Cellular Signalling", "Center for Clinical Epidemiology"]
UNIS = ["Northbridge University", "Instituto de Ciencias Sinteticas", "Kestrel Medical College",
        "Universite de Valmont", "Harbourside Research Hospital", "Ostberg University Hospital"]

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

PUBTYPES = [("D016428", "Journal Article"), ("D016449", "Randomized Controlled Trial"),
            ("D016448", "Multicenter Study"), ("D013485", "Research Support, Non-U.S. Gov't"),
            ("D016454", "Review"), ("D002363", "Case Reports"), ("D003160", "Comparative Study")]
CHECK_TAGS = [("D006801", "Humans"), ("D005260", "Female"), ("D008297", "Male"),
              ("D000818", "Animals"), ("D051379", "Mice")]


# ---------------------------------------------------------------------------
# Entity factories
# ---------------------------------------------------------------------------

class Ctx:
    def __init__(self, rng):
        self.rng = rng
        self.genes = []   # (symbol, full name)
        self.drugs = []   # (name, class)
        used = []
        for i in range(60):
            while True:
                a = rng.randrange(len(GENE_PARTS_A))
                sym = GENE_PARTS_A[a] + rng.choice(["", "L", "D", "K", "P"]) + str(rng.randint(1, 19))
                if sym not in used:
                    used.append(sym)
                    break
            num = re.sub(r"\D", "", sym)
            full = f"{GENE_FULL_A[a]} {rng.choice(GENE_FULL_B)} {num}"
            self.genes.append((sym, full))
        used = []
        for i in range(60):
            while True:
                stem, cls = rng.choice(DRUG_STEM)
                name = rng.choice(DRUG_PREFIX) + rng.choice(DRUG_MID) + stem
                if name not in used:
                    used.append(name)
                    break
            self.drugs.append((name, cls))


def pval(rng):
    return rng.choice(["0.001", "0.002", "0.004", "0.008", "0.01", "0.02", "0.03", "0.04", "0.047"])


def ci(rng, lo=0.4, hi=3.0):
    est = round(rng.uniform(lo, hi), 2)
    a = round(est * rng.uniform(0.55, 0.9), 2)
    b = round(est * rng.uniform(1.12, 1.8), 2)
    return f"{est:.2f}", f"{a:.2f}", f"{b:.2f}"


def maybe_i(rng, s, p=0.35):
    """Gene symbols are italicised in some records (markup inside AbstractText)."""
    return f"<i>{esc(s)}</i>" if rng.random() < p else esc(s)


def pexpr(rng):
    r = rng.random()
    if r < 0.4:
        return f"<i>P</i> = {pval(rng)}"
    if r < 0.7:
        return f"P &lt; {rng.choice(['0.001', '0.01', '0.05'])}"
    return f"p = {pval(rng)}"


# Sentence factories.  Each returns an XML fragment (already escaped).

def pick(rng, templates, t, key):
    """Choose a template not yet used in this abstract (falls back to any)."""
    used = t.setdefault("_used", [])
    free = [k for k in range(len(templates)) if (key, k) not in used]
    k = rng.choice(free) if free else rng.randrange(len(templates))
    used.append((key, k))
    return templates[k]()

def s_background(rng, t):
    c = [
        lambda: f"{esc(t['disease'][0].upper() + t['disease'][1:])} remains a major cause of morbidity in {esc(t['pop'])}, yet the mechanisms that drive {esc(t['process'])} in this setting are incompletely understood.",
        lambda: f"Accumulating evidence implicates {maybe_i(rng, t['gene'][0])} in the control of {esc(t['process'])}, but its contribution to {esc(t['disease'])} has not been examined systematically.",
        lambda: f"Current treatment options for {esc(t['disease'])} are limited by modest efficacy, cumulative toxicity and high cost.",
        lambda: f"{esc(t['drug'][0].capitalize())}, an investigational {esc(t['drug'][1])}, showed encouraging activity in preclinical models of {esc(t['disease'])}.",
        lambda: f"Dysregulated {esc(t['pathway'])} signalling has been reported in {esc(t['cell'])} from patients with {esc(t['disease'])}.",
        lambda: f"Circulating {esc(t['biomarker'])} has been proposed as a prognostic marker, although prospective validation is lacking.",
        lambda: f"Whether {esc(t['covariate'])} modifies the association between {esc(t['biomarker'])} and clinical outcomes is unknown.",
        lambda: f"Observational studies have yielded conflicting estimates of the incidence of {esc(t['disease'])} in {esc(t['country'])}, partly because case definitions varied.",
        lambda: f"Genome-wide association studies have mapped several susceptibility loci for {esc(t['disease'])}, but the causal genes at most loci remain unresolved.",
        lambda: f"In {esc(t['organism'])}, perturbation of {esc(t['pathway'])} signalling reproduces key histological features of human {esc(t['disease'])}.",
        lambda: f"Early recognition of {esc(t['disease'])} is hampered by nonspecific symptoms and by the absence of validated point-of-care tests.",
    ]
    return pick(rng, c, t, "s_background")


def s_objective(rng, t):
    c = [
        lambda: f"We aimed to evaluate the efficacy and safety of {esc(t['drug'][0])} in {esc(t['pop'])} with {esc(t['disease'])}.",
        lambda: f"This study investigated the role of {maybe_i(rng, t['gene'][0])} in {esc(t['process'])} using {esc(t['organism'])} and primary human {esc(t['cell'])}.",
        lambda: f"The objective was to determine whether baseline {esc(t['biomarker'])} predicts {esc(t['endpoint'])} in {esc(t['disease'])}.",
        lambda: f"Here we characterise the transcriptional landscape of {esc(t['tissue'])} tissue in {esc(t['disease'])} at single-cell resolution.",
    ]
    return pick(rng, c, t, "s_objective")


def s_methods(rng, t):
    n = rng.randint(48, 4800)
    y1 = rng.randint(2005, 2016)
    c = [
        lambda: f"We conducted a {esc(t['design'])} of {n} {esc(t['pop'])} recruited at {rng.randint(2, 31)} centres in {esc(t['country'])} between {y1} and {y1 + rng.randint(2, 7)}.",
        lambda: f"{esc(t['cell'][0].upper() + t['cell'][1:])} were isolated from {esc(t['tissue'])} biopsies and analysed by {esc(t['method'])} and {esc(t['method2'])}.",
        lambda: f"The primary endpoint was {esc(t['endpoint'])}; secondary endpoints included {esc(rng.choice(ENDPOINTS))} and safety.",
        lambda: f"Associations were estimated with {esc(t['model'])} adjusted for age, sex, {esc(t['covariate'])} and {esc(rng.choice(COVARIATES))}.",
        lambda: f"{maybe_i(rng, t['gene'][0])} was silenced with short hairpin RNA in {esc(rng.choice(CELL_LINES))} cells, and rescue experiments were performed with a knockdown-resistant construct.",
        lambda: f"Participants were randomly assigned (1:1) to {esc(t['drug'][0])} {rng.choice([5, 10, 25, 50, 100, 200])} mg once daily or matching placebo for {rng.choice([12, 24, 26, 48, 52])} weeks.",
        lambda: f"Conditional knockout {esc(t['organism'])} lacking {maybe_i(rng, t['gene'][0])} in {esc(t['cell'])} were generated and challenged with a {rng.choice(['high-fat diet', 'bleomycin injury', 'dextran sulfate sodium', 'cuprizone diet', 'unilateral ureteral obstruction'])} model.",
        lambda: f"Plasma {esc(t['biomarker'])} was measured by electrochemiluminescence immunoassay at baseline and after {rng.randint(3, 24)} months.",
        lambda: f"Missing covariate data were handled by multiple imputation with chained equations ({rng.choice([10, 20, 40])} imputed datasets).",
        lambda: f"Sensitivity analyses excluded participants with {esc(rng.choice(DISEASES))} at baseline and applied competing-risk models.",
        lambda: f"Libraries were sequenced to a median depth of {rng.randint(18, 90)} million reads, and reads were aligned to the GRCh38 reference genome.",
        lambda: f"Sample size was calculated to detect a {rng.randint(10, 30)}% relative difference with {rng.choice([80, 85, 90])}% power at a two-sided alpha of 0.05.",
        lambda: f"Dose-response relationships were explored with restricted cubic splines with knots at the 10th, 50th and 90th percentiles of {esc(t['biomarker'])}.",
    ]
    return pick(rng, c, t, "s_methods")


def s_results(rng, t):
    hr = ci(rng, 0.45, 0.95)
    or_ = ci(rng, 1.2, 3.4)
    pct = rng.randint(12, 68)
    c = [
        lambda: f"During a median follow-up of {rng.randint(9, 84)} months, {rng.randint(20, 900)} events were recorded.",
        lambda: f"{esc(t['drug'][0].capitalize())} reduced the risk of {esc(t['endpoint'])} by {pct}% compared with placebo (hazard ratio {hr[0]}; 95% CI {hr[1]}-{hr[2]}; {pexpr(rng)}).",
        lambda: f"Higher {esc(t['biomarker'])} concentrations were associated with {esc(t['endpoint'])} (odds ratio {or_[0]}, 95% CI {or_[1]} to {or_[2]}).",
        lambda: f"Loss of {maybe_i(rng, t['gene'][0])} attenuated {esc(t['process'])} and decreased phosphorylation of {maybe_i(rng, t['gene2'][0])} by {pct}% ({pexpr(rng)}).",
        lambda: f"Grade 3 or higher adverse events occurred in {pct}% of participants, most commonly {esc(rng.choice(ADVERSE))} and {esc(rng.choice(ADVERSE))}.",
        lambda: f"Transcriptomic profiling identified {rng.randint(80, 2400)} differentially expressed genes, which were enriched for {esc(t['pathway'])} signalling and {esc(rng.choice(PROCESSES))}.",
        lambda: f"The area under the receiver operating characteristic curve was {rng.uniform(0.66, 0.93):.2f} in the derivation cohort and {rng.uniform(0.61, 0.9):.2f} in the validation cohort.",
        lambda: f"Mean {esc(t['endpoint'])} differed by {rng.uniform(0.4, 9.5):.1f} units between groups (95% CI {rng.uniform(0.1, 0.4):.1f} to {rng.uniform(9.6, 14):.1f}).",
        lambda: f"{esc(t['cell'][0].upper() + t['cell'][1:])} expressing {maybe_i(rng, t['gene'][0])} expanded {rng.randint(2, 9)}-fold in lesional {esc(t['tissue'])} tissue relative to matched controls.",
        lambda: f"Of {rng.randint(300, 9000)} screened individuals, {rng.randint(120, 290)} met eligibility criteria and {rng.randint(90, 119)} completed follow-up.",
        lambda: f"The effect was consistent across prespecified subgroups defined by age, sex and {esc(t['covariate'])} (P for interaction &gt; 0.2).",
        lambda: f"Chromatin accessibility at the {maybe_i(rng, t['gene2'][0])} promoter increased after stimulation, coinciding with recruitment of {esc(t['pathway'])} effectors.",
        lambda: f"Compared with wild-type littermates, knockout {esc(t['organism'])} displayed a {rng.randint(20, 70)}% reduction in {esc(t['process'])} and preserved organ function.",
        lambda: f"Median {esc(t['biomarker'])} was {rng.uniform(1.5, 60):.1f} ng/mL (interquartile range {rng.uniform(0.5, 1.4):.1f}-{rng.uniform(61, 140):.1f}) in cases versus {rng.uniform(0.8, 20):.1f} ng/mL in controls.",
    ]
    return pick(rng, c, t, "s_results")


def s_conclusion(rng, t):
    c = [
        lambda: f"These findings identify {maybe_i(rng, t['gene'][0])} as a candidate therapeutic target in {esc(t['disease'])}.",
        lambda: f"{esc(t['drug'][0].capitalize())} was well tolerated and improved {esc(t['endpoint'])}; larger confirmatory trials are warranted.",
        lambda: f"Our data support a model in which {esc(t['pathway'])} signalling links {esc(t['process'])} to disease progression.",
        lambda: f"Routine measurement of {esc(t['biomarker'])} may refine risk stratification in {esc(t['pop'])} with {esc(t['disease'])}.",
        lambda: f"Further studies should clarify whether targeting {esc(t['cell'])} alters the natural history of {esc(t['disease'])}.",
        lambda: f"Clinicians should be aware that {esc(t['covariate'])} may confound apparent associations between {esc(t['biomarker'])} and outcome.",
        lambda: f"This work provides a resource for mechanistic studies of {esc(t['process'])} and for the design of biomarker-guided trials.",
    ]
    return pick(rng, c, t, "s_conclusion")


# Factoid facts: (kind, question template, sentence template, answers)
def make_fact(rng, t, kind):
    g, gfull = t["gene"]
    d, dcls = t["drug"]
    dis = t["disease"]
    if kind == "target":
        return {"q": f"Which protein is the molecular target of {d}?",
                "s": f"With a half-maximal inhibitory concentration of 4 nM and \u2265100-fold selectivity, {d} is a selective, orally bioavailable inhibitor of {g}.",
                "a": [g, gfull], "title": f"{d[0].upper() + d[1:]}, a selective {g} inhibitor, in {dis}"}
    if kind == "cause":
        return {"q": f"Mutations in which gene were identified in familial {dis}?",
                "s": f"Whole-exome sequencing revealed rare loss-of-function variants in {g} in affected members of {rng.randint(3, 14)} unrelated families with {dis}.",
                "a": [g, gfull], "title": f"Loss-of-function {g} variants in familial {dis}"}
    if kind == "inherit":
        mode = rng.choice(INHERITANCE)
        return {"q": f"What is the mode of inheritance of the {g}-associated form of {dis}?",
                "s": f"In all pedigrees the {g}-associated form of {dis} segregated with an {mode} pattern of inheritance." if mode[0] in "aeiou" else
                     f"In all pedigrees the {g}-associated form of {dis} segregated with a {mode} pattern of inheritance.",
                "a": [mode], "title": None}
    if kind == "marker":
        return {"q": f"Which circulating biomarker predicted response to {d}?",
                "s": f"Among all candidates (n = 48; \u03b1 = 0.05), baseline serum {t['biomarker']} was the only biomarker that predicted response to {d} in the validation set.",
                "a": [t["biomarker"]], "title": None}
    if kind == "class":
        return {"q": f"To which drug class does {d} belong?",
                "s": f"{d[0].upper() + d[1:]} belongs to the class of {dcls}s and was administered as add-on therapy.",
                "a": [dcls], "title": None}
    if kind == "cell":
        return {"q": f"Which cell type is the main source of {g} in {t['tissue']} tissue?",
                "s": f"Immunostaining showed that {t['cell']} were the main source of {g} in {t['tissue']} tissue, accounting for most of the positive cells.",
                "a": [t["cell"]], "title": None}
    if kind == "chrom":
        arm = f"{rng.randint(1, 22)}{rng.choice('pq')}{rng.randint(11, 36)}"
        return {"q": f"Where is the {g} gene located?",
                "s": f"The {g} gene maps to chromosome {arm} and spans approximately {rng.randint(12, 240)} kb.",
                "a": [f"chromosome {arm}", arm], "title": None}
    if kind == "pathway":
        return {"q": f"Which signalling pathway is activated by {g} in {t['cell']}?",
                "s": f"Mechanistically, {g} activated the {t['pathway']} pathway in {t['cell']}, and pharmacological blockade of this pathway abolished the phenotype.",
                "a": [t["pathway"], f"{t['pathway']} pathway"], "title": None}
    if kind == "enzyme":
        enz = f"{g} {rng.choice(ENZYME_NOUNS)}"
        return {"q": f"Which enzyme is deficient in patients with the {g}-related variant of {dis}?",
                "s": f"Enzymatic assays (37 \u00b0C, pH 7.4) demonstrated markedly reduced {enz} activity in fibroblasts from patients with the {g}-related variant of {dis}.",
                "a": [enz], "title": None}
    raise ValueError(kind)


FACT_KINDS = ["target", "cause", "marker", "class", "cell", "chrom", "pathway", "enzyme", "inherit"]


def new_topic(rng, ctx, i):
    return {
        "disease": DISEASES[i % len(DISEASES)] if i < len(DISEASES) else rng.choice(DISEASES),
        "gene": ctx.genes[i % len(ctx.genes)],
        "gene2": ctx.genes[(i * 7 + 3) % len(ctx.genes)],
        "drug": ctx.drugs[i % len(ctx.drugs)],
        "cell": rng.choice(CELL_TYPES), "tissue": rng.choice(TISSUES),
        "method": rng.choice(METHODS), "method2": rng.choice(METHODS),
        "design": rng.choice(DESIGNS), "pop": rng.choice(POPULATIONS),
        "pathway": rng.choice(PATHWAYS), "process": rng.choice(PROCESSES),
        "biomarker": rng.choice(BIOMARKERS), "endpoint": rng.choice(ENDPOINTS),
        "covariate": rng.choice(COVARIATES), "model": rng.choice(MODELS),
        "organism": rng.choice(ORGANISMS), "country": rng.choice(COUNTRIES),
    }


def plain_words(fragment):
    return len(re.sub(r"<[^>]+>", " ", fragment).split())


def make_abstract(rng, t, fact, structured, target_words):
    """Return list of (label, nlmcat, xml_fragment).  The fact sentence (plain
    text, no markup) is placed in the RESULTS/body part."""
    def distinct(fn, k):
        out = []
        for _ in range(40):
            if len(out) == k:
                break
            s = fn(rng, t)
            if s not in out:
                out.append(s)
        return out

    secs = {"B": distinct(s_background, 2), "O": distinct(s_objective, 1),
            "M": distinct(s_methods, 2), "R": distinct(s_results, 2), "C": distinct(s_conclusion, 1)}
    fact_xml = esc(fact["s"]) if fact else None

    def total():
        return sum(plain_words(s) for v in secs.values() for s in v) + (plain_words(fact_xml) if fact_xml else 0)

    order = ["M", "R", "B", "R", "M", "C"]
    k = 0
    while total() < target_words:
        key = order[k % len(order)]
        k += 1
        fn = {"B": s_background, "M": s_methods, "R": s_results, "C": s_conclusion}[key]
        s = fn(rng, t)
        if s not in secs[key]:
            secs[key].append(s)
    while total() > 295:
        for key in ["M", "R", "B"]:
            if len(secs[key]) > 1 and total() > 295:
                secs[key].pop()
    if fact_xml:
        pos = rng.randint(0, len(secs["R"]))
        secs["R"].insert(pos, fact_xml)
    if structured:
        labels = rng.choice([
            [("BACKGROUND", "BACKGROUND", "BO"), ("METHODS", "METHODS", "M"), ("RESULTS", "RESULTS", "R"), ("CONCLUSIONS", "CONCLUSIONS", "C")],
            [("OBJECTIVE", "OBJECTIVE", "BO"), ("DESIGN", "METHODS", "M"), ("RESULTS", "RESULTS", "R"), ("CONCLUSION", "CONCLUSIONS", "C")],
            [("INTRODUCTION", "BACKGROUND", "BO"), ("MATERIALS AND METHODS", "METHODS", "M"), ("FINDINGS", "RESULTS", "R"), ("INTERPRETATION", "CONCLUSIONS", "C")],
            [("AIMS", "OBJECTIVE", "BO"), ("METHODS AND RESULTS", "RESULTS", "MR"), ("CONCLUSIONS", "CONCLUSIONS", "C")],
        ])
        out = []
        for lab, cat, keys in labels:
            sents = [s for key in keys for s in secs[key]]
            out.append((lab, cat, " ".join(sents)))
        return out
    sents = secs["B"] + secs["O"] + secs["M"] + secs["R"] + secs["C"]
    return [(None, None, " ".join(sents))]


def make_title(rng, t, fact):
    if fact and fact.get("title") and rng.random() < 0.6:
        return esc(fact["title"]) + "."
    c = [
        lambda: f"{esc(t['gene'][0])} drives {esc(t['process'])} in {esc(t['disease'])}",
        lambda: f"Efficacy and safety of {esc(t['drug'][0])} in {esc(t['pop'])} with {esc(t['disease'])}: a {esc(t['design'])}",
        lambda: f"{esc(t['biomarker'][0].upper() + t['biomarker'][1:])} and {esc(t['endpoint'])} in {esc(t['disease'])}",
        lambda: f"Single-cell atlas of {esc(t['tissue'])} {esc(t['cell'])} in {esc(t['disease'])}",
        lambda: f"Targeting {esc(t['pathway'])} signalling attenuates {esc(t['process'])} in experimental {esc(t['disease'])}",
        lambda: f"Association of {esc(t['covariate'])} with {esc(t['endpoint'])} among {esc(t['pop'])}: the {esc(t['country'])} {rng.choice(['HERON', 'LANTERN', 'ORCHID', 'SUMMIT', 'TIDAL', 'ASPEN'])} study",
    ]
    return rng.choice(c)() + "."


# ---------------------------------------------------------------------------
# XML assembly
# ---------------------------------------------------------------------------

def authors_xml(rng, n, indent=""):
    out = ['<AuthorList CompleteYN="Y">']
    for k in range(n):
        fn, ini = rng.choice(FIRST_NAMES)
        ln = rng.choice(LAST_NAMES)
        aff = f"{rng.choice(DEPTS)}, {rng.choice(UNIS)}, {rng.choice(COUNTRIES)}."
        out.append(f'<Author ValidYN="Y"><LastName>{ln}</LastName><ForeName>{fn}</ForeName>'
                   f'<Initials>{ini}</Initials><AffiliationInfo><Affiliation>{esc(aff)}</Affiliation>'
                   f'</AffiliationInfo></Author>')
    if rng.random() < 0.1:
        out.append('<Author ValidYN="Y"><CollectiveName>Synthetic Cohort Consortium Investigators</CollectiveName></Author>')
    out.append("</AuthorList>")
    return "".join(out)


def pubdate_xml(spec):
    kind = spec["kind"]
    if kind == "medline":
        return f"<PubDate><MedlineDate>{spec['text']}</MedlineDate></PubDate>"
    if kind == "season":
        return f"<PubDate><Year>{spec['year']}</Year><Season>{spec['season']}</Season></PubDate>"
    if kind == "ym":
        return f"<PubDate><Year>{spec['year']}</Year><Month>{spec['month']}</Month></PubDate>"
    return f"<PubDate><Year>{spec['year']}</Year><Month>{spec['month']}</Month><Day>{spec['day']:02d}</Day></PubDate>"


def history_xml(y, m):
    rec_y, rec_m = (y - 1, m + 6) if m <= 6 else (y, m - 6)
    acc_m = max(1, m - 1)
    return ("<History>"
            f'<PubMedPubDate PubStatus="received"><Year>{rec_y}</Year><Month>{rec_m}</Month><Day>11</Day></PubMedPubDate>'
            f'<PubMedPubDate PubStatus="accepted"><Year>{y}</Year><Month>{acc_m}</Month><Day>20</Day></PubMedPubDate>'
            f'<PubMedPubDate PubStatus="entrez"><Year>{y}</Year><Month>{m}</Month><Day>3</Day><Hour>6</Hour><Minute>12</Minute></PubMedPubDate>'
            f'<PubMedPubDate PubStatus="pubmed"><Year>{y}</Year><Month>{m}</Month><Day>4</Day><Hour>6</Hour><Minute>0</Minute></PubMedPubDate>'
            f'<PubMedPubDate PubStatus="medline"><Year>{y}</Year><Month>{m}</Month><Day>4</Day><Hour>6</Hour><Minute>1</Minute></PubMedPubDate>'
            "</History>")


def abstract_xml(sections, other=None, copyright_=None):
    parts = ["<Abstract>"]
    for lab, cat, frag in sections:
        attrs = ""
        if lab is not None:
            attrs += f' Label="{esc_attr(lab)}"'
        if cat is not None:
            attrs += f' NlmCategory="{cat}"'
        parts.append(f"<AbstractText{attrs}>{frag}</AbstractText>")
    if copyright_:
        parts.append(f"<CopyrightInformation>{esc(copyright_)}</CopyrightInformation>")
    parts.append("</Abstract>")
    return "".join(parts)


def article_xml(rec):
    """rec: dict describing one PubmedArticle.  Returns XML string."""
    rng = rec["rng"]
    pmid = rec["pmid"]
    j = rec["journal"]
    y = rec["pubdate"].get("year", rec.get("hist_year", 2019))
    m = rec.get("hist_month", 5)
    x = []
    x.append(f'<PubmedArticle><MedlineCitation Status="{rec["status"]}" Owner="{rec.get("owner", "NLM")}"'
             + (' IndexingMethod="Automated"' if rec.get("automated") else "") + ">")
    x.append(f'<PMID Version="{rec.get("version", 1)}">{pmid}</PMID>')
    if rec["status"] == "MEDLINE":
        x.append(f"<DateCompleted><Year>{y}</Year><Month>{m:02d}</Month><Day>15</Day></DateCompleted>")
    x.append(f"<DateRevised><Year>{y + 1}</Year><Month>{m:02d}</Month><Day>02</Day></DateRevised>")
    x.append(f'<Article PubModel="{rec.get("pubmodel", "Print-Electronic")}"><Journal>'
             f'<ISSN IssnType="Electronic">{j[2]}</ISSN><JournalIssue CitedMedium="Internet">'
             f'<Volume>{rec["volume"]}</Volume><Issue>{rec["issue"]}</Issue>{pubdate_xml(rec["pubdate"])}</JournalIssue>'
             f"<Title>{esc(j[0])}</Title><ISOAbbreviation>{esc(j[1])}</ISOAbbreviation></Journal>")
    if rec["title"] is None:
        x.append("<ArticleTitle/>")
    else:
        x.append(f"<ArticleTitle>{rec['title']}</ArticleTitle>")
    p0 = rng.randint(100, 2900)
    x.append(f"<Pagination><MedlinePgn>{p0}-{p0 + rng.randint(4, 14)}</MedlinePgn></Pagination>")
    if rec.get("doi"):
        x.append(f'<ELocationID EIdType="doi" ValidYN="Y">{esc(rec["doi"])}</ELocationID>')
    if rec.get("abstract_xml"):
        x.append(rec["abstract_xml"])
    x.append(authors_xml(rng, rec.get("n_authors", rng.randint(2, 7))))
    for lang in rec["languages"]:
        x.append(f"<Language>{lang}</Language>")
    x.append("<PublicationTypeList>" + "".join(
        f'<PublicationType UI="{ui}">{esc(n)}</PublicationType>' for ui, n in rec["pubtypes"]) + "</PublicationTypeList>")
    if rec.get("vernacular"):
        x.append(f"<VernacularTitle>{rec['vernacular']}</VernacularTitle>")
    x.append(f'<ArticleDate DateType="Electronic"><Year>{y}</Year><Month>{m:02d}</Month><Day>0{rng.randint(1, 9)}</Day></ArticleDate>')
    x.append("</Article>")
    x.append(f"<MedlineJournalInfo><Country>{esc(j[3])}</Country><MedlineTA>{esc(j[1])}</MedlineTA>"
             f"<NlmUniqueID>{rec['nlmid']}</NlmUniqueID><ISSNLinking>{j[2]}</ISSNLinking></MedlineJournalInfo>")
    if rec.get("chemicals"):
        x.append("<ChemicalList>" + "".join(
            f'<Chemical><RegistryNumber>0</RegistryNumber><NameOfSubstance UI="{ui}">{esc(n)}</NameOfSubstance></Chemical>'
            for ui, n in rec["chemicals"]) + "</ChemicalList>")
    x.append("<CitationSubset>IM</CitationSubset>")
    if rec.get("mesh"):
        x.append("<MeshHeadingList>" + "".join(
            f'<MeshHeading><DescriptorName UI="{ui}" MajorTopicYN="{mj}">{esc(n)}</DescriptorName>'
            + (f'<QualifierName UI="{q[0]}" MajorTopicYN="N">{q[1]}</QualifierName>' if q else "")
            + "</MeshHeading>" for ui, n, mj, q in rec["mesh"]) + "</MeshHeadingList>")
    if rec.get("other_abstract"):
        x.append(rec["other_abstract"])
    if rec.get("keywords"):
        x.append('<KeywordList Owner="NOTNLM">' + "".join(
            f'<Keyword MajorTopicYN="N">{esc(k)}</Keyword>' for k in rec["keywords"]) + "</KeywordList>")
    x.append("<CoiStatement>The authors declare no competing interests.</CoiStatement>")
    x.append("</MedlineCitation><PubmedData>")
    x.append(history_xml(y, m))
    x.append(f"<PublicationStatus>{rec.get('pubstatus', 'ppublish')}</PublicationStatus><ArticleIdList>")
    x.append(f'<ArticleId IdType="pubmed">{pmid}</ArticleId>')
    if rec.get("doi"):
        x.append(f'<ArticleId IdType="doi">{esc(rec["doi"])}</ArticleId>')
    if rec.get("pmc"):
        x.append(f'<ArticleId IdType="pmc">{rec["pmc"]}</ArticleId>')
    x.append("</ArticleIdList>")
    if rec.get("references"):
        # A reference with its own ArticleIdList: its doi must NOT be taken as the article's doi.
        x.append("<ReferenceList>" + "".join(
            f"<Reference><Citation>{esc(c)}</Citation><ArticleIdList><ArticleId IdType=\"doi\">{esc(d)}</ArticleId>"
            f"<ArticleId IdType=\"pubmed\">{p}</ArticleId></ArticleIdList></Reference>" for c, d, p in rec["references"])
            + "</ReferenceList>")
    x.append("</PubmedData></PubmedArticle>")
    return "".join(x)


# ---------------------------------------------------------------------------
# Record construction
# ---------------------------------------------------------------------------

def base_record(rng, ctx, i, pmid, topic, fact, structured=None):
    j = JOURNALS[i % len(JOURNALS)]
    year = 2008 + (i * 7) % 18
    month = 1 + (i * 5) % 12
    if structured is None:
        structured = rng.random() < 0.5
    sections = make_abstract(rng, topic, fact, structured, rng.randint(170, 270))
    kws = sorted({topic["disease"], topic["gene"][0], topic["method"], topic["pathway"]})
    mesh = [(ui, n, "N", None) for ui, n in CHECK_TAGS[:1]]
    mesh.append((f"D9{i:05d}", topic["disease"][0].upper() + topic["disease"][1:], "Y",
                 ("Q000188", "drug therapy") if rng.random() < 0.5 else ("Q000235", "genetics")))
    mesh.append((f"D9{i + 500:05d}", topic["process"][0].upper() + topic["process"][1:], "N", None))
    if rng.random() < 0.5:
        mesh.append(CHECK_TAGS[1] + ("N", None))
    mesh.sort(key=lambda r: r[1])
    pubtypes = [PUBTYPES[0]] + ([rng.choice(PUBTYPES[1:4])] if rng.random() < 0.5 else [])
    rec = {
        "rng": rng, "pmid": pmid, "journal": j, "status": rng.choice(["MEDLINE", "MEDLINE", "PubMed-not-MEDLINE", "In-Data-Review"]),
        "volume": rng.randint(3, 180), "issue": rng.randint(1, 12),
        "pubdate": {"kind": "ymd" if rng.random() < 0.6 else "ym", "year": year, "month": MONTHS[month - 1], "day": rng.randint(1, 28)},
        "hist_month": month,
        "title": make_title(rng, topic, fact),
        "sections": sections,
        "languages": ["eng"], "pubtypes": pubtypes,
        "nlmid": str(9900000 + i * 37),
        "doi": f"10.5555/synth.{year}.{pmid % 100000:05d}" if rng.random() < 0.85 else None,
        "pmc": f"PMC9{pmid % 1000000:06d}" if rng.random() < 0.45 else None,
        "chemicals": [(f"C9{i:05d}", topic["drug"][0])] if rng.random() < 0.6 else None,
        "mesh": mesh, "keywords": kws if rng.random() < 0.7 else None,
        "automated": rng.random() < 0.3,
        "topic": topic, "fact": fact,
    }
    return rec


def finish(rec):
    if rec.get("sections") is not None and "abstract_xml" not in rec:
        rec["abstract_xml"] = abstract_xml(rec["sections"], copyright_=rec.get("copyright"))
    return article_xml(rec)


def special_records(rng, ctx):
    """Hand-written edge cases, keyed by baseline index."""
    S = {}

    def topic(i):
        return new_topic(rng, ctx, i)

    # 2: structured abstract with UNASSIGNED category, Label without NlmCategory,
    #    a section without Label and one with an empty Label attribute.
    t = topic(2)
    S[2] = dict(sections=[
        ("BACKGROUND", "BACKGROUND", f"Fibrotic remodelling of the {esc(t['tissue'])} is a common end point of chronic injury, and {esc(t['cell'])} are thought to orchestrate matrix deposition through paracrine signals."),
        ("KEY FINDINGS", "UNASSIGNED", f"Across {rng.randint(200, 900)} biopsies, {esc(t['cell'])} expressing {esc(t['gene'][0])} localised to the leading edge of fibrotic foci, and their density correlated with collagen content (Spearman rho 0.61)."),
        ("STUDY LIMITATIONS", None, "The cross-sectional design precludes causal inference, and tissue sampling was restricted to surgical specimens obtained at a single academic centre."),
        (None, None, f"Lineage tracing in {esc(t['organism'])} confirmed that these cells arise from resident progenitors rather than circulating precursors, and pharmacological inhibition of {esc(t['pathway'])} signalling reduced their accumulation by nearly half."),
        ("", None, "Taken together, the data nominate a druggable stromal niche that sustains progressive fibrosis."),
    ], title=f"A stromal {esc(t['gene'][0])}-positive niche sustains fibrosis in the {esc(t['tissue'])}.", topic=t)

    # 3: inline markup in title and abstract incl. p<sub>trend</sub> &lt;0.01, <b>, <u>, <sup>, MathML.
    t = topic(3)
    S[3] = dict(sections=[
        ("BACKGROUND", "BACKGROUND", f"Dietary intake of <i>n</i>-3 polyunsaturated fatty acids has been inversely associated with {esc(t['disease'])}, but dose-response data are sparse."),
        ("METHODS", "METHODS", f"We followed {rng.randint(12000, 60000)} participants for a median of 11.2 years and modelled intake in quintiles; serum 25(OH)D<sub>3</sub> and HbA<sub>1c</sub> were measured at baseline, and incident cases were confirmed by record review (10<sup>3</sup> person-years as the denominator)."),
        ("RESULTS", "RESULTS", f"Risk decreased across quintiles (HR for extreme quintiles 0.71; 95% CI 0.58-0.87; p<sub>trend</sub> &lt;0.01). The association was <b>strongest</b> among never smokers and was <u>not</u> explained by body mass index. A threshold model with <mml:math {MML}><mml:mi>x</mml:mi><mml:mo>=</mml:mo><mml:mn>2</mml:mn></mml:math> servings per week fitted best, and the estimated <i>I</i><sup>2</sup> across cohorts was 18%."),
        ("CONCLUSIONS", "CONCLUSIONS", f"Higher <i>n</i>-3 fatty acid intake was associated with a lower risk of {esc(t['disease'])} in a dose-dependent manner."),
    ], title=f"Omega-3 intake, serum 25(OH)D<sub>3</sub> and risk of {esc(t['disease'])}: the <i>ORCHID</i> cohort (10<sup>5</sup> participants).", topic=t)

    # 4: character and entity references, NBSP and thin space, non-ASCII literals.
    t = topic(4)
    S[4] = dict(sections=[(None, None,
        f"Tumour necrosis factor-&#x3b1; (TNF-&#x3b1;) and transforming growth factor-&#946; (TGF-&#946;) act in concert during {esc(t['process'])}. "
        f"We compared responders &amp; non-responders to {esc(t['drug'][0])} and defined high expression as &gt;2-fold above the median and low expression as &lt;0.5-fold. "
        f"Cells were cultured at 37&#160;&#176;C in 5% CO<sub>2</sub> and treated with 10&#x2009;&#x3bc;M compound for 48 h. "
        f"Responders showed a 3.4&#x2009;&#xb1;&#x2009;0.6-fold increase in interferon-&#x3b3; secretion (p&#x2009;&lt;&#x2009;0.001), whereas non-responders did not (P&#160;=&#160;0.41). "
        f"Expression of the transcription factor NF-&#x3ba;B correlated with IL-1&#946; (r = 0.58) and with the M&#xfc;ller cell marker glutamine synthetase. "
        f"Patients from S&#xe3;o Paulo and Z&#xfc;rich contributed equally to both groups, and sex-stratified analyses (&#x2640; vs &#x2642;) gave similar estimates. "
        f"Using a cut-off of &#8805;15 pg/mL, the assay achieved a sensitivity of 82% &amp; a specificity of 77%. "
        f"Baseline characteristics are summarised as median [IQR]; ratios are given as A:B &#8776; 1:3. "
        f"These results suggest that the TNF-&#x3b1;/TGF-&#946; axis marks a biologically distinct subgroup that might benefit from combination therapy, and prospective stratified trials are now in preparation."
    )], title=f"TNF-&#x3b1; &amp; TGF-&#946; signalling in responders vs non-responders to {esc(t['drug'][0])} (&lt;0.5-fold vs &gt;2-fold).", topic=t)

    # 5: PubDate MedlineDate "2019 Nov-Dec"
    S[5] = dict(pubdate={"kind": "medline", "text": "2019 Nov-Dec"})
    # 6: PubDate Year + Season
    S[6] = dict(pubdate={"kind": "season", "year": 2020, "season": "Spring"})
    # 7: no abstract at all (letter/comment)
    t = topic(7)
    S[7] = dict(sections=None, title=f"Comment on: {esc(t['drug'][0])} in {esc(t['disease'])}.",
                pubtypes=[("D016428", "Journal Article"), ("D016420", "Comment")], topic=t, no_fact=True)
    # 8: degenerate: MedlineCitation with only a PMID (handled in build)
    S[8] = dict(degenerate=True)
    # 9: OtherAbstract in Spanish (Publisher)
    S[9] = dict(other_abstract=(
        '<OtherAbstract Type="Publisher" Language="spa"><AbstractText>'
        "Este estudio sintetico evaluo la respuesta inflamatoria en una cohorte ficticia. "
        "Los resultados sugieren una asociacion modesta entre los biomarcadores sericos y la progresion clinica."
        "</AbstractText></OtherAbstract>"))
    # 10: PMID Version="2" already in the baseline
    S[10] = dict(version=2)
    # 11: non-English record (spa) with VernacularTitle and bracketed English title
    t = topic(11)
    S[11] = dict(languages=["spa"], journal=JOURNALS[7],
                 title=f"[Clinical characteristics of {esc(t['disease'])} in a synthetic regional registry].",
                 vernacular=f"Caracter&#xed;sticas cl&#xed;nicas de la enfermedad en un registro regional sint&#xe9;tico.",
                 other_abstract=(
                     '<OtherAbstract Type="Publisher" Language="spa"><AbstractText Label="INTRODUCCI&#xd3;N">'
                     "Se describen las caracter&#xed;sticas cl&#xed;nicas de una cohorte ficticia.</AbstractText>"
                     '<AbstractText Label="CONCLUSIONES">La mayor&#xed;a de los pacientes respondi&#xf3; al tratamiento.</AbstractText>'
                     "</OtherAbstract>"), topic=t, no_fact=True)
    # 12: empty ArticleTitle element + German VernacularTitle, no abstract (title must be "")
    S[12] = dict(title=None, empty_title=True, sections=None, languages=["ger"], no_fact=True,
                 vernacular="Kommentar zu einer synthetischen Fallserie &#xfc;ber seltene Komplikationen.")
    # 13: two languages
    S[13] = dict(languages=["eng", "fre"])
    # 14: pretty-printed MathML with indentation/newlines inside AbstractText and title
    t = topic(14)
    S[14] = dict(sections=[(None, None,
        f"Oxygen uptake kinetics were modelled in {rng.randint(20, 60)} trained volunteers.\n"
        f"        Peak oxygen uptake (\n          <mml:math {MML}>\n            <mml:msub>\n              <mml:mrow>\n"
        "                <mml:mi>V</mml:mi>\n                <mml:mo>.</mml:mo>\n              </mml:mrow>\n"
        "              <mml:mrow>\n                <mml:mi>O</mml:mi>\n                <mml:mn>2</mml:mn>\n"
        "              </mml:mrow>\n            </mml:msub>\n          </mml:math>\n        ) was reached after "
        f"{rng.randint(8, 14)} minutes of incremental exercise, and the time constant\n        of the primary phase was "
        f"<mml:math {MML}><mml:mi>&#x3c4;</mml:mi><mml:mo>=</mml:mo><mml:mn>31</mml:mn></mml:math> s.\n"
        "        Kinetics were slower in participants carrying the minor allele, and the difference persisted after adjustment for body mass\n"
        "        and habitual training volume. Mitochondrial content estimated from muscle biopsies explained roughly one third of the\n"
        "        variance in the time constant, whereas capillary density explained little. Repeated testing after an eight-week\n"
        "        interval showed good reliability, with an intraclass correlation above 0.85 for all kinetic parameters. We conclude that\n"
        "        oxygen uptake kinetics provide a sensitive, reproducible physiological readout for intervention studies in athletes.\n      ")],
        title=f"Oxygen uptake kinetics (<mml:math {MML}><mml:mi>V</mml:mi><mml:msub><mml:mi>O</mml:mi><mml:mn>2</mml:mn></mml:msub></mml:math>) in endurance athletes.",
        topic=t, no_fact=True)
    # 15: abstract with CopyrightInformation (must not be part of abstract text) and a ReferenceList with dois
    S[15] = dict(copyright="Copyright (c) 2021 Synthetic Publisher Ltd. All rights reserved.",
                 references=[("Synthetic A, et al. A placeholder reference. J Synth Transl Med. 2015;1:1-9.", "10.5555/ref.0001", "90999001"),
                             ("Synthetic B, et al. Another placeholder. Ann Comput Oncol. 2016;2:10-19.", "10.5555/ref.0002", "90999002")])
    # 16: record without doi and without pmc
    S[16] = dict(doi=None, pmc=None)
    # 17: record without PubmedData at all (doi must be null)
    #     (no ELocationID doi either: the fixtures never show an ELocationID-only doi,
    #      so the sample avoids that ambiguous case)
    S[17] = dict(no_pubmeddata=True, doi=None)
    return S


def book_xml(rng, pmid, with_chapter):
    t_title = "Synthetic Handbook of Rare Metabolic Disorders"
    x = ["<PubmedBookArticle><BookDocument>"]
    x.append(f'<PMID Version="1">{pmid}</PMID>')
    x.append(f'<ArticleIdList><ArticleId IdType="bookaccession">NBK9{pmid % 100000:05d}</ArticleId></ArticleIdList>')
    x.append('<Book><Publisher><PublisherName>Synthetic Academic Press</PublisherName><PublisherLocation>Northbridge (SY)</PublisherLocation></Publisher>')
    if with_chapter:
        x.append(f'<BookTitle book="synthhb">{t_title}</BookTitle>')
        x.append("<PubDate><Year>2021</Year><Month>03</Month></PubDate>")
    else:
        x.append('<BookTitle book="synthgl">Synthetic Glossary of <i>In Vitro</i> Assays &amp; Reagents</BookTitle>')
        x.append("<PubDate><MedlineDate>2018-2023</MedlineDate></PubDate>")
    x.append('<AuthorList Type="editors"><Author><LastName>Lindqvist</LastName><ForeName>Ingrid</ForeName><Initials>I</Initials></Author></AuthorList>')
    x.append("<Medium>Internet</Medium></Book>")
    if with_chapter:
        x.append('<LocationLabel Type="chapter">Chapter 7</LocationLabel>')
        x.append('<ArticleTitle book="synthhb" part="ch7">Hereditary <i>SYN4</i> hydroxylase deficiency</ArticleTitle>')
    x.append("<Language>eng</Language>")
    x.append('<AuthorList Type="authors"><Author><LastName>Mensah</LastName><ForeName>Kwame</ForeName><Initials>K</Initials></Author></AuthorList>')
    x.append('<PublicationType UI="D016454">Review</PublicationType>')
    if with_chapter:
        x.append("<Abstract>"
                 '<AbstractText Label="CLINICAL CHARACTERISTICS" NlmCategory="BACKGROUND">Hereditary SYN4 hydroxylase deficiency is a synthetic '
                 "metabolic disorder characterised by episodic hypoglycaemia, hepatomegaly and exercise intolerance that typically presents in "
                 "early childhood. Severity ranges from mild fasting intolerance to life-threatening metabolic crises.</AbstractText>"
                 '<AbstractText Label="DIAGNOSIS/TESTING" NlmCategory="METHODS">The diagnosis is established by demonstrating reduced enzyme '
                 "activity in cultured fibroblasts or by identifying biallelic pathogenic variants on molecular genetic testing.</AbstractText>"
                 '<AbstractText Label="MANAGEMENT" NlmCategory="CONCLUSIONS">Treatment consists of frequent carbohydrate-rich meals, avoidance '
                 "of prolonged fasting and emergency protocols during intercurrent illness.</AbstractText>"
                 "</Abstract>")
        x.append('<Sections><Section><SectionTitle book="synthhb" part="ch7" sec="ch7.Summary">Summary</SectionTitle></Section></Sections>')
    x.append("<ContributionDate><Year>2021</Year><Month>03</Month><Day>09</Day></ContributionDate>")
    x.append("</BookDocument><PubmedBookData><History>"
             '<PubMedPubDate PubStatus="pubmed"><Year>2021</Year><Month>3</Month><Day>10</Day><Hour>6</Hour><Minute>0</Minute></PubMedPubDate>'
             '<PubMedPubDate PubStatus="medline"><Year>2021</Year><Month>3</Month><Day>10</Day><Hour>6</Hour><Minute>0</Minute></PubMedPubDate>'
             '<PubMedPubDate PubStatus="entrez"><Year>2021</Year><Month>3</Month><Day>10</Day><Hour>6</Hour><Minute>0</Minute></PubMedPubDate>'
             "</History><PublicationStatus>ppublish</PublicationStatus><ArticleIdList>"
             f'<ArticleId IdType="pubmed">{pmid}</ArticleId>'
             + (f'<ArticleId IdType="doi">10.5555/synthhb.ch7</ArticleId>' if with_chapter else "")
             + "</ArticleIdList></PubmedBookData></PubmedBookArticle>")
    return "".join(x)


BOOK_IDX = {40: True, 77: False}   # baseline index -> with chapter (ArticleTitle) or whole book


def build_baseline(rng, ctx):
    specials = special_records(rng, ctx)
    recs = []     # (pmid, xml, rec or None)
    fact_kinds = list(FACT_KINDS)
    for i in range(N_BASELINE):
        pmid = BASE_PMID + i
        if i in BOOK_IDX:
            recs.append((pmid, book_xml(rng, pmid, BOOK_IDX[i]), None))
            continue
        sp = specials.get(i, {})
        if sp.get("degenerate"):
            recs.append((pmid, f'<PubmedArticle><MedlineCitation Status="In-Data-Review" Owner="NLM"><PMID Version="1">{pmid}</PMID></MedlineCitation></PubmedArticle>', None))
            continue
        topic = sp.get("topic") or new_topic(rng, ctx, i)
        fact = None
        if not sp.get("no_fact") and "sections" not in sp:
            fact = make_fact(rng, topic, fact_kinds[i % len(fact_kinds)])
        rec = base_record(rng, ctx, i, pmid, topic, fact)
        for k, v in sp.items():
            if k == "topic":
                continue
            rec[k] = v
        if sp.get("empty_title"):
            rec["title"] = None
        recs.append((pmid, rec, rec))
    # render
    out = []
    for pmid, body, rec in recs:
        if isinstance(body, str):
            out.append((pmid, body, rec))
            continue
        if rec["pubdate"]["kind"] == "medline":
            rec["hist_year"] = 2019
        xml = finish(rec)
        if rec.get("no_pubmeddata"):
            xml = re.sub(r"<PubmedData>.*</PubmedData>", "", xml)
        out.append((pmid, xml, rec))
    return out


def wrap(xml_records, tail=""):
    body = "\n".join(xml_records)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + DOCTYPE + "\n<PubmedArticleSet>\n"
            + body + "\n" + tail + "</PubmedArticleSet>\n").encode("utf-8")


# ---------------------------------------------------------------------------
# Independent extraction (xml.etree) following the text contract
# ---------------------------------------------------------------------------

def text_of(e):
    """All descendant text in document order, whitespace runs collapsed, trimmed."""
    return " ".join("".join(e.itertext()).split())


def extract(data):
    root = ET.fromstring(data)
    out = []
    for art in root:
        if art.tag == "DeleteCitation":
            out.append({"deleted": [int(p.text) for p in art.findall("PMID")]})
            continue
        if art.tag == "PubmedArticle":
            mc = art.find("MedlineCitation")
            pmid = mc.find("PMID")
            a = mc.find("Article")
            ids = art.find("PubmedData/ArticleIdList")
            t = a.find("ArticleTitle") if a is not None else None
            title = text_of(t) if t is not None else None
            absn = a.find("Abstract") if a is not None else None
            pd = a.find("Journal/JournalIssue/PubDate") if a is not None else None
            langs = [text_of(l) for l in a.findall("Language")] if a is not None else []
        elif art.tag == "PubmedBookArticle":
            bd = art.find("BookDocument")
            pmid = bd.find("PMID")
            ids = art.find("PubmedBookData/ArticleIdList")
            t = bd.find("ArticleTitle")
            if t is None:
                t = bd.find("Book/BookTitle")
            title = text_of(t) if t is not None else None
            absn = bd.find("Abstract")
            pd = bd.find("Book/PubDate")
            langs = [text_of(l) for l in bd.findall("Language")]
        else:
            continue
        abstract = None
        sections = None
        if absn is not None:
            parts, sections = [], []
            for s in absn.findall("AbstractText"):
                lab = s.get("Label")
                txt = text_of(s)
                sections.append(txt)
                # `Label: text`; `Label:` for a labelled section without text; an unlabelled
                # empty section adds no line.
                if lab:
                    parts.append(f"{lab}: {txt}" if txt else f"{lab}:")
                elif txt:
                    parts.append(txt)
            abstract = "\n".join(parts)
        year = None
        if pd is not None:
            y = pd.find("Year")
            if y is not None:
                year = int(text_of(y))
            else:
                md = pd.find("MedlineDate")
                if md is not None:
                    mm = re.search(r"\d{4}", text_of(md))
                    year = int(mm.group()) if mm else None
        doi = None
        if ids is not None:
            for aid in ids.findall("ArticleId"):
                if aid.get("IdType") == "doi":
                    doi = text_of(aid)
                    break
        out.append({"pmid": int(text_of(pmid)), "version": int(pmid.get("Version", "1")),
                    "title": title, "abstract": abstract, "year": year, "languages": langs, "doi": doi,
                    "_sections": sections})
    return out


def public(row):
    return {k: v for k, v in row.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------
# Update file
# ---------------------------------------------------------------------------

REVISE_IDX = [20, 21, 22]     # baseline indexes revised in the update file
DELETE_IDX = [30, 31, 32]     # baseline indexes deleted in the update file
N_NEW = 16


def build_update(rng, ctx, baseline):
    out = []
    by_idx = {pmid - BASE_PMID: (pmid, xml, rec) for pmid, xml, rec in baseline}
    for n, idx in enumerate(REVISE_IDX):
        pmid, _, rec = by_idx[idx]
        r = dict(rec)
        r["rng"] = rng
        r["title"] = rec["title"].rstrip(".") + (": a corrected analysis." if n != 1 else " (revised).")
        extra = ("Erratum: the number of participants reported in the original version was incorrect and has been amended; "
                 "conclusions are unchanged.")
        secs = list(rec["sections"])
        lab, cat, frag = secs[-1]
        secs[-1] = (lab, cat, frag + " " + extra)
        r["sections"] = secs
        r.pop("abstract_xml", None)
        r["status"] = "MEDLINE"
        if n == 2:
            r["version"] = 2   # new version of a version-1 baseline record
        out.append((pmid, finish(r), r))
    for k in range(N_NEW):
        i = 100 + k
        pmid = UPDATE_PMID + k
        topic = new_topic(rng, ctx, i)
        fact = make_fact(rng, topic, FACT_KINDS[k % len(FACT_KINDS)]) if k < 8 else None
        rec = base_record(rng, ctx, i, pmid, topic, fact)
        if k == 3:
            rec["pubdate"] = {"kind": "season", "year": 2025, "season": "Winter"}
        if k == 5:
            rec["pubdate"] = {"kind": "medline", "text": "2024 Dec-2025 Jan"}
            rec["hist_year"] = 2024
        if k == 7:
            rec["sections"] = None
            rec["fact"] = None
        out.append((pmid, finish(rec), rec))
    deleted = [BASE_PMID + i for i in DELETE_IDX]
    tail = "<DeleteCitation>" + "".join(f'<PMID Version="1">{p}</PMID>' for p in deleted) + "</DeleteCitation>\n"
    return out, tail, deleted


# ---------------------------------------------------------------------------
# BioASQ
# ---------------------------------------------------------------------------

def qid(rng):
    return "".join(rng.choice("0123456789abcdef") for _ in range(24))


def doc_url(pmid):
    return f"http://www.ncbi.nlm.nih.gov/pubmed/{pmid}"


def split_sentences(s):
    return [x for x in re.split(r"(?<=[.!?])\s+(?=[A-Z])", s) if x]


def snippet(doc, text, section="abstract"):
    src = doc["_abstract_plain"] if section == "abstract" else doc["title"]
    off = src.find(text)
    assert off >= 0, (doc["pmid"], text)
    return {"offsetInBeginSection": off, "offsetInEndSection": off + len(text), "text": text,
            "beginSection": section, "document": doc_url(doc["pmid"]), "endSection": section}


def factoid_question(rng, doc, other, with_distractor=True):
    f = doc["_fact"]
    snips = [snippet(doc, f["s"])]
    if doc["title"] and any(a in doc["title"] for a in f["a"]):
        snips.append(snippet(doc, doc["title"], "title"))
    docs = [doc_url(doc["pmid"])]
    if with_distractor and other is not None:
        sents = [s for s in split_sentences(other["_abstract_plain"]) if not any(a in s for a in f["a"])]
        s = sents[rng.randrange(len(sents))]
        snips.append(snippet(other, s))
        docs.append(doc_url(other["pmid"]))
    return {"body": f["q"], "documents": docs,
            "ideal_answer": [f["s"]], "exact_answer": [list(f["a"])],
            "type": "factoid", "id": qid(rng), "snippets": snips}


def build_bioasq(rng, rows):
    docs = [r for r in rows if r.get("_fact")]
    # leave revised/deleted baseline records out of BioASQ so the sample text is stable
    skip = {BASE_PMID + i for i in REVISE_IDX + DELETE_IDX}
    docs = [d for d in docs if d["pmid"] not in skip and BASE_PMID <= d["pmid"] < UPDATE_PMID]
    nofact = [r for r in rows if r.get("_sections") and not r.get("_fact") and r["pmid"] not in skip
              and BASE_PMID <= r["pmid"] < UPDATE_PMID]
    train_docs = docs[:32]
    test1_docs = docs[32:40]
    test2_docs = docs[40:48]
    rest = docs[48:]

    train = []
    for k, d in enumerate(train_docs):
        other = train_docs[(k + 5) % len(train_docs)]
        train.append(factoid_question(rng, d, other, with_distractor=(k % 3 != 2)))
    # a few other types
    a, b, c = rest[0], rest[1], rest[2]
    train.append({"body": f"List signalling pathways activated in {a['_topic']['cell']} in the sample corpus.",
                  "documents": [doc_url(a["pmid"]), doc_url(b["pmid"])],
                  "ideal_answer": [f"{a['_topic']['pathway']} and {b['_topic']['pathway']} signalling were reported."],
                  "exact_answer": [[a["_topic"]["pathway"]], [b["_topic"]["pathway"]]],
                  "type": "list", "id": qid(rng),
                  "snippets": [snippet(a, a["_fact"]["s"]), snippet(b, split_sentences(b["_abstract_plain"])[0])]})
    train.append({"body": f"Is {c['_topic']['drug'][0]} evaluated in {c['_topic']['disease']}?",
                  "documents": [doc_url(c["pmid"])],
                  "ideal_answer": [f"Yes, {c['_topic']['drug'][0]} was evaluated in a synthetic study."],
                  "exact_answer": "yes", "type": "yesno", "id": qid(rng),
                  "snippets": [snippet(c, split_sentences(c["_abstract_plain"])[0])]})
    n = nofact[0]
    train.append({"body": f"Describe the main findings of the study of {n['_topic']['disease'] if n.get('_topic') else 'the sample cohort'}.",
                  "documents": [doc_url(n["pmid"])],
                  "ideal_answer": [split_sentences(n["_abstract_plain"])[-1]],
                  "type": "summary", "id": qid(rng),
                  "snippets": [snippet(n, split_sentences(n["_abstract_plain"])[-1])]})

    def test_batch(tdocs, missing_pmid, leak):
        qs = []
        for k, d in enumerate(tdocs):
            other = tdocs[(k + 1) % len(tdocs)]
            q = factoid_question(rng, d, other, with_distractor=(k % 2 == 0))
            qs.append(q)
        # missing documents: append PMIDs that are not in the sample
        qs[1]["documents"].append(doc_url(missing_pmid))
        qs[4]["documents"].append(doc_url(missing_pmid))
        qs[4]["snippets"].append({"offsetInBeginSection": 0, "offsetInEndSection": 58,
                                  "text": "This document is intentionally absent from the sample XML.",
                                  "beginSection": "abstract", "document": doc_url(missing_pmid),
                                  "endSection": "abstract"})
        qs.extend(leak)
        # one yesno question (not factoid; ignored by the SQuAD conversion)
        d = tdocs[0]
        qs.append({"body": f"Is {d['_topic']['gene'][0]} discussed in the context of {d['_topic']['disease']}?",
                   "documents": [doc_url(d["pmid"])], "ideal_answer": ["Yes."], "exact_answer": "yes",
                   "type": "yesno", "id": qid(rng),
                   "snippets": [snippet(d, d["_fact"]["s"])]})
        return qs

    # leak 1: identical question (same id) in training and test batch 1
    leak1 = json.loads(json.dumps(train[0]))
    # leak 2: same question text after normalisation, different id, in test batch 2
    leak2 = json.loads(json.dumps(train[1]))
    leak2["id"] = qid(rng)
    # (differs only in case and whitespace: lower-case, collapse whitespace, trim -> identical)
    leak2["body"] = " " + leak2["body"].lower().replace(" ", "  ", 2) + "  "
    t1 = test_batch(test1_docs, MISSING_PMIDS[0], [leak1])
    t2 = test_batch(test2_docs, MISSING_PMIDS[1], [leak2])
    return train, t1, t2


def squad_train(train):
    paras = []
    for q in train:
        if q["type"] != "factoid":
            continue
        syns = [s for group in q["exact_answer"] for s in group]
        n = 0
        for sn in q["snippets"]:
            ctx = sn["text"]
            hit = next(((s, ctx.find(s)) for s in syns if ctx.find(s) >= 0), None)
            if hit is None:
                continue
            n += 1
            paras.append({"qas": [{"id": f"{q['id']}_{n:03d}", "question": q["body"],
                                   "answers": [{"text": hit[0], "answer_start": hit[1]}]}],
                          "context": ctx})
    return {"data": [{"paragraphs": paras, "title": "BioASQ-sample"}], "version": "BioASQ-sample"}


def squad_test(batch, by_pmid):
    paras = []
    for q in batch:
        if q["type"] != "factoid":
            continue
        n = 0
        for url in q["documents"]:
            pmid = int(url.rsplit("/", 1)[1])
            d = by_pmid.get(pmid)
            if d is None or d["abstract"] is None:
                continue   # document not in the sample: no context
            ctx = d["title"] + " " + d["abstract"].replace("\n", " ")  # BioBERT keeps section labels
            paras.append({"context": ctx, "qas": [{"question": q["body"], "id": f"{q['id']}_{n:03d}"}]})
            n += 1
    return {"version": "BioASQ-sample", "data": [{"title": "BioASQ-sample", "paragraphs": paras}]}


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------

def write_bytes(rel, data):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_gz(rel, raw):
    buf = gzip.compress(raw, compresslevel=9, mtime=0)
    write_bytes(rel, buf)
    name = os.path.basename(rel)
    write_bytes(rel + ".md5", f"MD5({name})= {hashlib.md5(buf).hexdigest()}\n".encode())


def write_jsonl(rel, rows):
    write_bytes(rel, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def write_json(rel, obj, indent=None):
    write_bytes(rel, (json.dumps(obj, ensure_ascii=False, indent=indent) + "\n").encode("utf-8"))


def annotate(rows, recs):
    facts = {pmid: rec for pmid, _, rec in recs if rec}
    for r in rows:
        if "pmid" not in r:
            continue
        rec = facts.get(r["pmid"])
        r["_fact"] = rec.get("fact") if rec else None
        r["_topic"] = rec.get("topic") if rec else None
        r["_abstract_plain"] = " ".join(r["_sections"]) if r["_sections"] is not None else None
        if r["_fact"] is not None:
            assert r["_fact"]["s"] in r["_abstract_plain"], r["pmid"]


# ---------------------------------------------------------------------------
# General-domain corpora (synthetic Wikipedia-style articles, C4-style web text)
# ---------------------------------------------------------------------------

CORPUS_SEED = SEED + 7   # its own generator: the PubMed and BioASQ outputs above do not change

PLACE_A = ["Var", "Kel", "Ost", "Brun", "Mar", "Tal", "Fen", "Hal", "Lind", "Sor", "Dun", "Ael"]
PLACE_B = ["holt", "mere", "wick", "stad", "by", "ford", "haven", "dale", "moor", "gard"]
RIVERS = ["Ambrel", "Tesk", "Lorne", "Vimmer", "Oska", "Hedra", "Calde", "Sunn"]
REGIONS = ["the Northern Fells", "the Brackwater Plain", "the Isle of Corran", "the Teskvale",
           "the Ambrel Delta", "the Highmoor Province"]
FIRST = ["Aldric", "Maren", "Iselin", "Tobiah", "Corvina", "Edda", "Lucan", "Sefa", "Orrin",
         "Wilma", "Josune", "Pietro", "Ylva", "Ansel"]
LAST = ["Quarrow", "Hensley", "Dalvik", "Okonte", "Marchetti", "Vell", "Strand", "Ibarra",
        "Kowalczyk", "Aumont", "Nakashima", "Fairlie"]
TRADES = ["cartographer", "glassmaker", "composer", "botanist", "shipwright", "astronomer",
          "architect", "novelist", "clockmaker", "linguist"]
THINGS = ["a folding telescope", "a method of dyeing wool", "a seven-string lute",
          "a tidal mill", "a shorthand alphabet", "a frost-hardy apple", "a lighthouse lens",
          "a card game called Tessellate"]
FOODS = ["sourdough pancakes", "roasted squash soup", "lemon barley salad", "spiced lentil stew",
         "oat and honey biscuits", "grilled leek tart"]
TOPICS_WEB = ["gardening", "home repair", "travel", "cooking", "cycling", "photography",
              "budgeting", "knitting"]


def place_name(rng):
    return rng.choice(PLACE_A) + rng.choice(PLACE_B)


def person_name(rng):
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def article_town(rng, i):
    name = place_name(rng)
    river = rng.choice(RIVERS)
    region = rng.choice(REGIONS)
    founded = rng.randint(1120, 1890)
    pop = rng.randint(900, 98000)
    title = f"{name} ({i})" if rng.random() < 0.15 else name
    paras = [
        f"{name} is a market town on the river {river} in {region}. It had a population of "
        f"{pop:,} at the last census.",
        f"The town was founded in {founded} around a ford of the {river}. Its weekly market "
        f"has been held on the same square since {founded + rng.randint(10, 90)}.",
    ]
    if rng.random() < 0.6:
        paras.append(f"== Economy ==\nThe economy of {name} rests on {rng.choice(['weaving', 'fishing', 'timber', 'tourism', 'printing'])} "
                     f"and on a small harbour that trades with {place_name(rng)}.")
    return title, paras


def article_person(rng, i):
    name = person_name(rng)
    trade = rng.choice(TRADES)
    born = rng.randint(1610, 1960)
    died = born + rng.randint(41, 93)
    home = place_name(rng)
    title = name
    paras = [
        f"{name} ({born}–{died}) was a {trade} from {home}, best known for {rng.choice(THINGS)}.",
        f"{name.split()[0]} trained in {place_name(rng)} and worked there for "
        f"{rng.randint(5, 30)} years before returning to {home}.",
    ]
    if rng.random() < 0.5:
        paras.append(f"== Legacy ==\nA street in {home} and a prize for young {trade}s are named "
                     f"after {name.split()[1]}.")
    return title, paras


def article_thing(rng, i):
    thing = rng.choice(THINGS)
    inventor = person_name(rng)
    year = rng.randint(1700, 1990)
    title = thing[2:].capitalize() if thing.startswith("a ") else thing.capitalize()
    paras = [
        f"{title} is {thing} first described by {inventor} in {year}.",
        f"Early versions were made in {place_name(rng)}; by {year + rng.randint(5, 60)} the design "
        f"had spread to {rng.choice(REGIONS)}.",
    ]
    return title, paras


def build_wikipedia(rng, n=60):
    rows = []
    makers = [article_town, article_person, article_thing]
    for i in range(n):
        title, paras = makers[i % 3](rng, i)
        if i == 17:
            # A long article: longer than the demo's seq_len, truncated in document rows.
            paras = paras + [" ".join(paras) for _ in range(6)]
        text = "\n\n".join(paras)
        if i == 29:
            text = ""   # an empty article (left out by `pipeline corpus`)
        page = 7000 + 13 * i
        rows.append({
            "id": str(page),
            "url": f"https://en.wikipedia.example/wiki?curid={page}",
            "title": title,
            "text": text,
        })
    return rows


def build_c4(rng, n=60):
    lines = []
    for i in range(n):
        topic = rng.choice(TOPICS_WEB)
        town = place_name(rng)
        kind = i % 3
        if kind == 0:
            food = rng.choice(FOODS)
            text = (f"Our favourite {food} recipe\nThis {food} takes about {rng.randint(20, 90)} "
                    f"minutes. Start by warming the oven, then mix everything in one bowl. "
                    f"Serves {rng.randint(2, 8)}.")
        elif kind == 1:
            text = (f"{topic.capitalize()} tips from {town}\nWe asked {rng.randint(3, 40)} readers "
                    f"in {town} what they wish they had known about {topic}. The most common "
                    f"answer: start small and keep notes.")
        else:
            text = (f"Visiting {town} this {rng.choice(['spring', 'summer', 'autumn', 'winter'])}? "
                    f"The {rng.choice(RIVERS)} footpath is open again, and the café by the bridge "
                    f"serves {rng.choice(FOODS)} until {rng.randint(5, 9)} pm.")
        if i == 41:
            text = "   \n  "   # whitespace only (left out by `pipeline corpus`)
        day = 1 + i % 28
        lines.append({
            "text": text,
            "timestamp": f"2019-04-{day:02d}T{(i * 7) % 24:02d}:{(i * 13) % 60:02d}:{(i * 29) % 60:02d}Z",
            "url": f"https://www.example-{topic}.test/{town.lower()}/{i}",
        })
    return lines


def build_corpora():
    rng = random.Random(CORPUS_SEED)
    wiki = build_wikipedia(rng)
    c4 = build_c4(rng)
    write_jsonl("corpus-src/wikipedia-articles.jsonl", wiki)
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in c4).encode("utf-8")
    write_bytes("corpus/c4/en/c4-train.00000-of-00001.json.gz",
                gzip.compress(raw, compresslevel=9, mtime=0))


def main():
    rng = random.Random(SEED)
    ctx = Ctx(rng)

    baseline = build_baseline(rng, ctx)
    raw1 = wrap([x for _, x, _ in baseline])
    rows1 = extract(raw1)
    annotate(rows1, baseline)

    update, tail, deleted = build_update(rng, ctx, baseline)
    raw2 = wrap([x for _, x, _ in update], tail)
    rows2 = extract(raw2)
    annotate(rows2, update)

    # sanity checks on the sample itself
    assert len(rows1) == N_BASELINE
    assert rows2[-1] == {"deleted": deleted}

    write_gz("pubmed/baseline/pubmed26n0001.xml.gz", raw1)
    write_gz("pubmed/updatefiles/pubmed26n0002.xml.gz", raw2)
    write_jsonl("expect/pubmed26n0001.jsonl", [public(r) for r in rows1])
    write_jsonl("expect/pubmed26n0002.jsonl", [public(r) for r in rows2])

    by_pmid = {r["pmid"]: r for r in rows1}
    train, t1, t2 = build_bioasq(rng, rows1)
    write_json("bioasq/training-sample.json", {"questions": train})
    write_json("bioasq/test-batch1_golden.json", {"questions": t1})
    write_json("bioasq/test-batch2_golden.json", {"questions": t2})
    write_json("bioasq/squad-train-sample.json", squad_train(train), indent=2)
    write_json("bioasq/squad-test-sample.json", squad_test(t1, by_pmid), indent=2)

    build_corpora()


if __name__ == "__main__":
    main()
