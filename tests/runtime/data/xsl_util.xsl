<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="2.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hci="http://sap.com/it/"
	xmlns:main="https://main.com/"
    exclude-result-prefixes="hci">
    
    <xsl:param name="exchange"/>
	
    <xsl:variable name="CurrencyCodes" select="document('pd:GenericPartner:CurrencyCodes:Binary')"/>
	
	<xsl:template name="transform_currency_code">
	     <xsl:param name="sender_currency_code" />
		 <Currency><xsl:value-of select="$CurrencyCodes/LookUp/Entry[SenderCode=$sender_currency_code]/ReceiverCode"/></Currency>
	</xsl:template>
  
	<xsl:template name="set_property">
	    <xsl:param name="property_name" />
		<xsl:param name="property_value" />
		<xsl:value-of select="hci:setProperty($exchange, $property_name, $property_value)"/>
	</xsl:template>
	
</xsl:stylesheet>