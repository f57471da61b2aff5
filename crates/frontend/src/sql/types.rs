//! SQL type names → Arrow types, for `CAST`, `::` and `CREATE TABLE` column definitions.

use arrow::datatypes::{DataType, TimeUnit, DECIMAL128_MAX_PRECISION};
use sqlparser::ast::{DataType as SqlType, ExactNumberInfo, TimezoneInfo};

use ember_planner::{not_impl_err, plan_err, Result};

/// The Arrow type Ember uses for a SQL type name.
pub fn sql_to_arrow_type(t: &SqlType) -> Result<DataType> {
    use SqlType as S;
    Ok(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) => DataType::Int8,
        S::SmallInt(_) | S::Int2(_) | S::Int16 => DataType::Int16,
        S::Int(_) | S::Integer(_) | S::Int4(_) | S::Int32 | S::MediumInt(_) => DataType::Int32,
        S::BigInt(_) | S::Int8(_) | S::Int64 => DataType::Int64,
        S::Real | S::Float4 | S::Float32 => DataType::Float32,
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => DataType::Float64,
        // FLOAT(p) with p <= 24 is single precision in the SQL standard.
        S::Float(info) => match info {
            ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        S::Decimal(info) | S::Numeric(info) | S::Dec(info) => decimal_type(info)?,
        S::Varchar(_)
        | S::Char(_)
        | S::Character(_)
        | S::CharacterVarying(_)
        | S::CharVarying(_)
        | S::Nvarchar(_)
        | S::Text
        | S::String(_) => DataType::Utf8,
        S::Date => DataType::Date32,
        S::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
        | S::TimestampNtz(_)
        | S::Datetime(_) => DataType::Timestamp(TimeUnit::Nanosecond, None),
        S::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        S::Binary(_) | S::Varbinary(_) | S::Bytea | S::Blob(_) => DataType::Binary,
        S::Custom(name, _) => {
            let n = name.to_string().to_ascii_lowercase();
            match n.as_str() {
                "long" => DataType::Int64,
                "short" => DataType::Int16,
                "byte" => DataType::Int8,
                _ => return not_impl_err!("SQL type {t} is not supported"),
            }
        }
        other => return not_impl_err!("SQL type {other} is not supported"),
    })
}

fn decimal_type(info: &ExactNumberInfo) -> Result<DataType> {
    // Spark's default for a bare DECIMAL.
    let (p, s) = match info {
        ExactNumberInfo::None => (10, 0),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
    };
    if p == 0 || p > DECIMAL128_MAX_PRECISION as u64 {
        return plan_err!(
            "DECIMAL precision must be between 1 and {DECIMAL128_MAX_PRECISION}, got {p}"
        );
    }
    if s < 0 || s as u64 > p {
        return plan_err!("DECIMAL scale must be between 0 and the precision {p}, got {s}");
    }
    Ok(DataType::Decimal128(p as u8, s as i8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    fn ty(s: &str) -> Result<DataType> {
        let t = Parser::new(&GenericDialect {})
            .try_with_sql(s)
            .and_then(|mut p| p.parse_data_type())
            .map_err(|e| ember_planner::EmberError::Sql(e.to_string()))?;
        sql_to_arrow_type(&t)
    }

    #[test]
    fn maps_common_types() {
        assert_eq!(ty("INT").unwrap(), DataType::Int32);
        assert_eq!(ty("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(ty("DOUBLE").unwrap(), DataType::Float64);
        assert_eq!(ty("DECIMAL(15, 2)").unwrap(), DataType::Decimal128(15, 2));
        assert_eq!(ty("VARCHAR(25)").unwrap(), DataType::Utf8);
        assert_eq!(ty("TEXT").unwrap(), DataType::Utf8);
        assert_eq!(ty("DATE").unwrap(), DataType::Date32);
        assert_eq!(ty("BOOLEAN").unwrap(), DataType::Boolean);
        assert_eq!(
            ty("TIMESTAMP").unwrap(),
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        );
    }

    #[test]
    fn rejects_bad_decimals_and_unknown_types() {
        assert!(ty("DECIMAL(40, 2)")
            .unwrap_err()
            .to_string()
            .contains("precision"));
        assert!(ty("DECIMAL(5, 7)")
            .unwrap_err()
            .to_string()
            .contains("scale"));
        assert!(ty("GEOMETRY").is_err());
    }
}
